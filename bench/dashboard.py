"""Web dashboard benchmark: the executions page over 100,000 stored executions, a 1,000-node
execution's page in Chromium, and live updates while 200 executions run at once.

    .venv/bin/python bench/dashboard.py                      # all three parts
    .venv/bin/python bench/dashboard.py --only list --executions 100000 --repeat 20
    .venv/bin/python bench/dashboard.py --only list --postgres postgresql://postgres@127.0.0.1/postgres

Every part runs a real ``orchestrion serve`` process (uvicorn, embedded engine, SQLite WAL,
rate limiting off, one admin API key) on a free loopback port with a fresh database.

list   The database is seeded with N final executions (``--executions``, default 100,000) of
       three workflows, spread over 30 days, a tenth started by a schedule and a twentieth by
       an event, written through the store in batches before the server starts. Then each
       request the executions page makes is timed from this process with httpx (one
       connection, ``--repeat`` times each, median and p95 reported): the page shell, the
       first page of 50 unfiltered and under each filter, a page deep in the list (by its
       cursor), and the counts by state unfiltered and filtered. The page costs its shell plus
       the list and the counts, which its script requests in parallel.
graph  A 1,000-node workflow (100 layers of 10 noop nodes, each depending on 2 of the layer
       before) is run to completion, then its page is opened in headless Chromium (Debian's
       chromium + chromium-driver) ``--repeat`` times: the time from navigation start until
       the page's script marks it loaded (detail, definition and the whole journal fetched,
       layout computed, SVG drawn and states painted; budget 2 s at p95), the layout + draw
       time alone, and from a click on "Fit" and on the minimap until the next frame.
graph  also needs chromium; without it the part is reported as not run.
follow A 1,000-node run (an input, a 6 s delay, then 1,000 noop nodes in 100 chains of 10)
       whose execution page is opened during the delay, in headless Chromium: how long after
       the run ended (its ``finished_at``) the page showed every node completed, and the
       page's main-thread stalls while it followed (PerformanceObserver "longtask": tasks
       over 50 ms), the longest and their sum; also the slowest answer to a look at the page.
live   200 executions of a 5-node workflow (python ``sleep`` nodes, 0.2 s each) start at once
       while a client follows ``GET /v1/events/stream?tail=true``, the stream the executions
       page listens to. Reported: for every event of those executions the stream delivered,
       its receive time minus its time in the journal (``at``), p50/p99/max; whether every
       completion arrived, in journal order.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

from orchestrion.core.states import ExecutionStatus
from orchestrion.store.base import ExecutionRecord
from orchestrion.store.factory import open_store

KEY = "bench-admin-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
CLI = [sys.executable, "-m", "orchestrion.cli.app"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    """``orchestrion serve`` on a loopback port and a SQLite file."""

    def __init__(self, db: Path | str, log: Path) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {k: v for k, v in os.environ.items() if not k.upper().endswith("_PROXY")}
        env.update(
            {
                "ORCHESTRION_API_KEYS": f"{KEY}:admin",
                "ORCHESTRION_RATE_LIMIT_PER_SECOND": "0",
                "ORCHESTRION_LOG_LEVEL": os.environ.get("ORCHESTRION_LOG_LEVEL", "WARNING"),
            }
        )
        command = [*CLI, "serve", "--host", "127.0.0.1", "--port", str(self.port), "--db", str(db)]
        with log.open("ab") as out:
            self.process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SystemExit(f"server exited:\n{log.read_text()}")
            try:
                if httpx.get(f"{self.url}/health", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        self.stop()
        raise SystemExit("server did not start")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def _submit(url: str, definition: dict[str, Any]) -> str:
    answer = httpx.post(f"{url}/v1/workflow", json=definition, headers=AUTH, timeout=60)
    answer.raise_for_status()
    return str(answer.json()["execution_id"])


def _run(url: str, definition: dict[str, Any]) -> str:
    execution_id = _submit(url, definition)
    answer = httpx.post(f"{url}/v1/workflow/trigger/{execution_id}", headers=AUTH, timeout=60)
    answer.raise_for_status()
    return execution_id


def _wait_final(url: str, execution_id: str, timeout: float = 120) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = httpx.get(f"{url}/v1/workflows/{execution_id}?include_outputs=false",
                           headers=AUTH, timeout=30).json()["status"]  # fmt: skip
        if status in ("COMPLETED", "FAILED", "CANCELLED"):
            return str(status)
        time.sleep(0.1)
    raise SystemExit(f"{execution_id} did not finish")


def _ms(values: list[float]) -> tuple[float, float]:
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return statistics.median(ordered) * 1000, p95 * 1000


# ------------------------------------------------------------------ list


def _small(name: str) -> dict[str, Any]:
    return {"name": name, "dag": {"nodes": [{"id": "a", "handler": "noop"}]}}


async def _seed(db: Path | str, definition_ids: list[str], count: int) -> None:
    store = open_store(db if isinstance(db, str) else f"sqlite:///{db}")
    await store.open()
    try:
        rng = random.Random(7)
        now = time.time()
        finals = [ExecutionStatus.COMPLETED] * 8 + [
            ExecutionStatus.FAILED,
            ExecutionStatus.CANCELLED,
        ]
        batch: list[ExecutionRecord] = []
        for i in range(count):
            created = now - rng.uniform(0, 30 * 86400)
            roll = rng.random()
            key = None
            if roll < 0.10:
                key = f"schedule:nightly@{created:.3f}"
            elif roll < 0.15:
                key = f"event:evt-{i}:wf"
            batch.append(
                ExecutionRecord(
                    id=str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                    definition_id=definition_ids[i % len(definition_ids)],
                    status=rng.choice(finals),
                    created_at=created,
                    started_at=created + 0.01,
                    finished_at=created + rng.uniform(0.05, 30),
                    idempotency_key=key,
                )
            )
            if len(batch) == 2000:
                await store.create_executions(batch)
                batch = []
        if batch:
            await store.create_executions(batch)
    finally:
        await store.close()


def bench_list(work: Path, count: int, repeat: int, postgres: str | None) -> dict[str, Any]:
    db: Path | str = work / "list.db" if postgres is None else postgres
    log = work / "list.log"
    server = Server(db, log)
    try:
        names = ["orders", "billing", "reports"]
        for name in names:
            _submit(server.url, _small(name))
        definitions = httpx.get(f"{server.url}/v1/definitions", headers=AUTH).json()["items"]
        ids = [d["id"] for d in definitions]
    finally:
        server.stop()
    started = time.perf_counter()
    asyncio.run(_seed(db, ids, count))
    seeded = time.perf_counter() - started
    server = Server(db, log)
    try:
        with httpx.Client(base_url=server.url, headers=AUTH, timeout=60) as client:
            first = client.get("/v1/workflows?limit=50").json()
            cursor = first["next_cursor"]
            for _ in range(19):  # twenty pages in: a cursor deep in the list
                cursor = client.get(f"/v1/workflows?limit=50&cursor={cursor}").json()["next_cursor"]
            since = datetime.fromtimestamp(time.time() - 3 * 86400).isoformat()
            month = int(time.time() - 30 * 86400)
            prefix = first["items"][0]["execution_id"][:4]
            cases = {
                "page shell GET /ui/": "/ui/",
                "list, first page of 50": "/v1/workflows?limit=50",
                "list, status=FAILED": "/v1/workflows?limit=50&status=FAILED",
                "list, workflow=billing": "/v1/workflows?limit=50&workflow=billing",
                "list, trigger=schedule": "/v1/workflows?limit=50&trigger=schedule",
                "list, last 3 days": f"/v1/workflows?limit=50&created_after={since}",
                f"list, id_prefix={prefix}": f"/v1/workflows?limit=50&id_prefix={prefix}",
                "list, page 21 (cursor)": f"/v1/workflows?limit=50&cursor={cursor}",
                "counts + 48 spans of the last day (the chart)": "/v1/stats/executions?buckets=48",
                "counts + 48 spans of 30 days": f"/v1/stats/executions?buckets=48"
                f"&created_after={month}",
                "counts, unfiltered": "/v1/stats/executions",
                "counts, status=FAILED": "/v1/stats/executions?status=FAILED",
                "counts, workflow=billing": "/v1/stats/executions?workflow=billing",
                "counts, trigger=event": "/v1/stats/executions?trigger=event",
                "counts, last 3 days": f"/v1/stats/executions?created_after={since}",
            }
            timings: dict[str, list[float]] = {case: [] for case in cases}
            for _ in range(repeat):  # round by round: a drift hits every case alike
                for case, path in cases.items():
                    t0 = time.perf_counter()
                    answer = client.get(path)
                    timings[case].append(time.perf_counter() - t0)
                    assert answer.status_code == 200, (path, answer.text)
            total = client.get("/v1/stats/executions").json()["total"]
        month_iso = datetime.fromtimestamp(month, UTC).isoformat()
        browser = _browser_times(
            server.url,
            {
                "page in Chromium, as it opens": "/ui/",
                "page in Chromium, 30-day range": f"/ui/?created_after={quote(month_iso)}",
            },
            repeat,
        )
    finally:
        server.stop()
    for case, values in browser.items():
        timings[case] = values
    rows = {case: _ms(values) for case, values in timings.items()}
    worst_list = max(v[0] for k, v in rows.items() if k.startswith("list"))
    worst_count = max(v[0] for k, v in rows.items() if k.startswith("counts"))
    return {
        "executions": total,
        "seeded_s": round(seeded, 1),
        "rows": rows,
        "page_ms_worst_medians": rows["page shell GET /ui/"][0] + max(worst_list, worst_count),
    }


def _chromium(profile: str) -> Any:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
                 f"--user-data-dir={profile}", "--window-size=1400,1000"):  # fmt: skip
        options.add_argument(flag)
    return webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)


def _signed_in(driver: Any, url: str) -> None:
    driver.get(f"{url}/ui/login")
    driver.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        f"fetch('/v1/session', {{method: 'POST', headers: {{Authorization: 'Bearer {KEY}'}}}})"
        ".then((r) => done(r.status));"
    )


def _loaded_ms(driver: Any, url: str) -> float:
    """Open ``url``; the page's own clock when its script marked it loaded (0: navigation)."""
    driver.get(url)
    deadline = time.monotonic() + 60
    while not driver.execute_script("return document.body.dataset.loaded === 'true'"):
        if time.monotonic() > deadline:
            raise SystemExit(f"{url} did not load")
        time.sleep(0.01)
    loaded = float(driver.execute_script("return Number(document.body.dataset.loadedMs)"))
    # The executions page asks for its chart once the list is shown: let that finish, so
    # that it does not weigh on the next page's load.
    while driver.execute_script(
        "return document.body.dataset.view === 'executions' && !document.body.dataset.chart"
    ):
        if time.monotonic() > deadline:
            raise SystemExit(f"{url} drew no chart")
        time.sleep(0.01)
    return loaded


def _browser_times(url: str, pages: dict[str, str], repeat: int) -> dict[str, list[float]]:
    """Seconds from navigation until each page showed its data, in headless Chromium."""
    if not (shutil.which("chromium") and shutil.which("chromedriver")):
        return {}
    profile = tempfile.mkdtemp(prefix="bench-chromium-")
    driver = _chromium(profile)
    try:
        _signed_in(driver, url)
        times: dict[str, list[float]] = {case: [] for case in pages}
        for _ in range(repeat):
            for case, path in pages.items():
                times[case].append(_loaded_ms(driver, url + path) / 1000)
        return times
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


# ------------------------------------------------------------------ graph


def _wide(layers: int, width: int) -> dict[str, Any]:
    nodes: list[dict[str, Any]] = []
    for layer in range(layers):
        for col in range(width):
            deps = []
            if layer:
                deps = [f"n{layer - 1}_{col}", f"n{layer - 1}_{(col + 1) % width}"]
            nodes.append({"id": f"n{layer}_{col}", "handler": "noop", "dependencies": deps})
    return {"name": "thousand", "dag": {"nodes": nodes}}


# Milliseconds from a click on the element (selector) until the frame after it is painted:
# how long "Fit" and a jump through the minimap leave the page unresponsive.
_FRAME_AFTER = """
const [selector, done] = arguments;
const target = document.querySelector(selector);
const box = target.getBoundingClientRect();
const t0 = performance.now();
const at = {clientX: box.left + box.width * 0.9, clientY: box.top + box.height / 2, bubbles: true};
target.dispatchEvent(new PointerEvent("pointerdown", at));
target.dispatchEvent(new PointerEvent("pointerup", at));
target.dispatchEvent(new MouseEvent("click", at));
requestAnimationFrame(() => requestAnimationFrame(() => done(performance.now() - t0)));
"""


def bench_graph(work: Path, repeat: int) -> dict[str, Any]:
    if not (shutil.which("chromium") and shutil.which("chromedriver")):
        return {"not_run": "chromium and chromium-driver are not installed"}
    server = Server(work / "graph.db", work / "graph.log")
    profile = tempfile.mkdtemp(prefix="bench-chromium-")
    driver = None
    try:
        execution_id = _run(server.url, _wide(100, 10))
        _wait_final(server.url, execution_id)
        events = 0
        after = 0
        while True:
            path = f"/v1/workflows/{execution_id}/events?after={after}&limit=1000"
            page = httpx.get(server.url + path, headers=AUTH).json()
            events += len(page["items"])
            if len(page["items"]) < 1000:
                break
            after = page["next_after"]
        driver = _chromium(profile)
        _signed_in(driver, server.url)
        loaded: list[float] = []
        drawn: list[float] = []
        fitted: list[float] = []
        jumped: list[float] = []
        for _ in range(repeat):
            page_url = f"{server.url}/ui/executions/{execution_id}"
            loaded.append(_loaded_ms(driver, page_url) / 1000)
            info = driver.execute_script("return document.getElementById('graph-info').textContent")
            drawn.append(float(info.split("drawn in ")[1].split(" ms")[0]) / 1000)
            fitted.append(round(driver.execute_async_script(_FRAME_AFTER, "#zoom-fit")) / 1000)
            jumped.append(round(driver.execute_async_script(_FRAME_AFTER, "svg.minimap")) / 1000)
        return {
            "nodes": 1000,
            "events": events,
            "loaded_ms": _ms(loaded),
            "layout_draw_ms": _ms(drawn),
            "fit_frame_ms": _ms(fitted),
            "minimap_frame_ms": _ms(jumped),
            "budget_ms": 2000,
            "within_budget": _ms(loaded)[1] < 2000,
        }
    finally:
        if driver is not None:
            driver.quit()
        shutil.rmtree(profile, ignore_errors=True)
        server.stop()


# ------------------------------------------------------------------ follow


def _live_thousand(delay: float) -> dict[str, Any]:
    """An input, a delay (time to open the page), then 1,000 noop nodes in chains of 10."""
    nodes: list[dict[str, Any]] = [
        {"id": "input", "handler": "input"},
        {
            "id": "wait",
            "handler": "delay",
            "dependencies": ["input"],
            "config": {"seconds": delay},
        },
    ]
    for i in range(1000):
        deps = ["wait"] if i < 100 else [f"n{i - 100}"]
        nodes.append({"id": f"n{i}", "handler": "noop", "dependencies": deps})
    return {"name": "live-thousand", "dag": {"nodes": nodes}}


# Record every task of the page's main thread longer than 50 ms from now on.
_WATCH_STALLS = """
window.__stalls = [];
new PerformanceObserver((list) => {
  for (const e of list.getEntries()) window.__stalls.push(e.duration);
}).observe({type: "longtask"});
"""
_COMPLETED = "return document.querySelectorAll('g.node[data-state=\"COMPLETED\"]').length"


def bench_follow(work: Path, delay: float = 6.0) -> dict[str, Any]:
    """A 1,000-node run followed live by its execution page, opened before the nodes start."""
    if not (shutil.which("chromium") and shutil.which("chromedriver")):
        return {"not_run": "chromium and chromium-driver are not installed"}
    server = Server(work / "follow.db", work / "follow.log")
    profile = tempfile.mkdtemp(prefix="bench-chromium-")
    driver = None
    try:
        driver = _chromium(profile)
        driver.set_script_timeout(600)
        _signed_in(driver, server.url)
        execution_id = _run(server.url, _live_thousand(delay))
        _loaded_ms(driver, f"{server.url}/ui/executions/{execution_id}")
        driver.execute_script(_WATCH_STALLS)
        probes: list[float] = []  # how long each look at the page took to answer
        shown_at = None
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            t = time.time()
            try:
                done = driver.execute_script(_COMPLETED)
            except Exception:  # the driver gave up waiting (120 s): the page is frozen
                done = 0
            probes.append(time.time() - t)
            if done >= 1002:
                shown_at = time.time()
                break
            time.sleep(0.1)
        detail = httpx.get(f"{server.url}/v1/workflows/{execution_id}?include_outputs=false",
                           headers=AUTH).json()  # fmt: skip
        started = datetime.fromisoformat(detail["started_at"].replace("Z", "+00:00"))
        ended = datetime.fromisoformat(detail["finished_at"].replace("Z", "+00:00"))
        stalls = driver.execute_script("return window.__stalls")
        return {
            "nodes": 1000,
            "run_s": round((ended - started).total_seconds(), 2),
            "shown_after_end_s": None
            if shown_at is None
            else round(shown_at - ended.timestamp(), 2),
            "longest_stall_ms": round(max(stalls, default=0)),
            "stalls_over_50ms": len(stalls),
            "stalled_ms_total": round(sum(stalls)),
            "slowest_probe_s": round(max(probes), 2),
        }
    finally:
        if driver is not None:
            driver.quit()
        shutil.rmtree(profile, ignore_errors=True)
        server.stop()


# ------------------------------------------------------------------ live


FIVE = {
    "name": "five-steps",
    "dag": {
        "nodes": [
            {
                "id": f"s{i}",
                "handler": "python",
                "dependencies": [f"s{i - 1}"] if i else [],
                "config": {"function": "sleep", "params": {"seconds": 0.2}},
            }
            for i in range(5)
        ]
    },
}


async def _follow(url: str, seen: list[tuple[float, dict[str, Any]]], stop: asyncio.Event) -> None:
    async with (
        httpx.AsyncClient(base_url=url, headers=AUTH, timeout=None) as client,
        client.stream("GET", "/v1/events/stream?tail=true") as stream,
    ):
        async for line in stream.aiter_lines():
            if line.startswith("data: "):
                seen.append((time.time(), json.loads(line[6:])))
            if stop.is_set():
                return


async def _live(url: str, count: int) -> dict[str, Any]:
    seen: list[tuple[float, dict[str, Any]]] = []
    stop = asyncio.Event()
    follower = asyncio.create_task(_follow(url, seen, stop))
    await asyncio.sleep(0.5)
    async with httpx.AsyncClient(base_url=url, headers=AUTH, timeout=60) as client:
        definition = (await client.post("/v1/workflow", json=FIVE)).json()
        name = definition["name"]

        async def one() -> str:
            answer = await client.post(f"/v1/definitions/{name}/executions", json={})
            answer.raise_for_status()
            return str(answer.json()["execution_id"])

        t0 = time.perf_counter()
        ids = await asyncio.gather(*(one() for _ in range(count)))
        started = time.perf_counter() - t0
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            counts = (await client.get(f"/v1/stats/executions?workflow={name}")).json()
            if counts["by_status"].get("COMPLETED", 0) >= count + 0:
                break
            await asyncio.sleep(0.2)
        finished = time.perf_counter() - t0
        await asyncio.sleep(1.0)  # the last events on their way
    stop.set()
    follower.cancel()
    await asyncio.gather(follower, return_exceptions=True)
    wanted = set(ids)
    mine = [(t, e) for t, e in seen if e["execution_id"] in wanted]
    lags = [t - datetime.fromisoformat(e["at"].replace("Z", "+00:00")).timestamp() for t, e in mine]
    seqs = [e["seq"] for _, e in mine]
    completed = sum(1 for _, e in mine if e["type"] == "execution.completed")
    ordered = sorted(lags)
    return {
        "executions": count,
        "start_all_s": round(started, 2),
        "all_done_s": round(finished, 2),
        "events": len(mine),
        "completions_seen": completed,
        "in_order": seqs == sorted(seqs),
        "lag_ms_p50": round(statistics.median(ordered) * 1000, 1),
        "lag_ms_p99": round(ordered[int(0.99 * (len(ordered) - 1))] * 1000, 1),
        "lag_ms_max": round(ordered[-1] * 1000, 1),
    }


def bench_live(work: Path, count: int) -> dict[str, Any]:
    server = Server(work / "live.db", work / "live.log")
    try:
        return asyncio.run(_live(server.url, count))
    finally:
        server.stop()


@contextlib.contextmanager
def _database(maintenance: str | None) -> Iterator[str | None]:
    """A fresh PostgreSQL database on the server of ``maintenance`` (None: SQLite)."""
    if maintenance is None:
        yield None
        return
    import asyncpg  # the store's driver

    name = f"bench_dashboard_{os.getpid()}"

    async def run(sql: str) -> None:
        conn = await asyncpg.connect(maintenance)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(run(f"CREATE DATABASE {name}"))
    try:
        yield maintenance.rsplit("/", 1)[0] + f"/{name}"
    finally:
        asyncio.run(run(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", choices=["list", "graph", "follow", "live"], action="append")
    parser.add_argument("--executions", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--concurrent", type=int, default=200)
    parser.add_argument(
        "--postgres",
        metavar="URL",
        help="run the list part on PostgreSQL: a database is made on this server for the run"
        " and dropped after (e.g. postgresql://postgres@127.0.0.1:5432/postgres)",
    )
    args = parser.parse_args()
    if not 1 <= args.executions <= 1_000_000 or not 1 <= args.concurrent <= 1000:
        raise SystemExit("--executions 1..1,000,000 and --concurrent 1..1,000")
    parts = args.only or ["list", "graph", "follow", "live"]
    print(f"# {platform.python_version()} on {platform.machine()}, {os.cpu_count()} CPUs")
    with tempfile.TemporaryDirectory(prefix="bench-dashboard-") as folder:
        work = Path(folder)
        if "list" in parts:
            with _database(args.postgres) as postgres:
                result = bench_list(work, args.executions, args.repeat, postgres)
            print(f"\n## executions page, {result['executions']} executions stored "
                  f"(seeded in {result['seeded_s']} s), {args.repeat} rounds\n")  # fmt: skip
            print("| request | median | p95 |\n|---|---|---|")
            for case, (median, p95) in result["rows"].items():
                print(f"| {case} | {median:.1f} ms | {p95:.1f} ms |")
            print(f"\npage = shell + slowest list + slowest counts (medians): "
                  f"{result['page_ms_worst_medians']:.0f} ms")  # fmt: skip
        if "graph" in parts:
            result = bench_graph(work, max(3, args.repeat // 4))
            print(f"\n## 1,000-node execution page\n\n{json.dumps(result)}")
        if "follow" in parts:
            result = bench_follow(work)
            print(f"\n## a live 1,000-node run followed by its page\n\n{json.dumps(result)}")
        if "live" in parts:
            result = bench_live(work, args.concurrent)
            title = f"live updates, {args.concurrent} concurrent executions"
            print(f"\n## {title}\n\n{json.dumps(result)}")


if __name__ == "__main__":
    main()
