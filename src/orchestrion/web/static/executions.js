// The executions list: filters kept in the URL, server-side pages (cursor), counts by state,
// and live refreshes from the event stream of every execution (at most one per second).
"use strict";

(() => {
  const FIELDS = [
    "status", "workflow", "trigger", "created_after", "created_before", "id_prefix", "id_suffix",
  ];
  const LIVE_TYPES = [
    "execution.started", "execution.completed", "execution.failed", "execution.cancelled",
    "execution.paused", "execution.resumed", "execution.waiting", "execution.retried",
    "execution.running",
  ];
  const PAGE = 50;
  let cursors = [null]; // the cursor of each page seen: back is the one before
  let page = 0;
  let dirty = false;
  let loading = false;
  let loads = 0;

  function filters() {
    const params = new URLSearchParams(location.search);
    const out = Object.create(null);
    for (const name of FIELDS) {
      const value = params.get(name);
      if (value) out[name] = value;
    }
    return out;
  }

  function toInputs() {
    const f = filters();
    O.$("f-status").value = f.status || "";
    O.$("f-workflow").value = f.workflow || "";
    O.$("f-trigger").value = f.trigger || "";
    O.$("f-after").value = local(f.created_after);
    O.$("f-before").value = local(f.created_before);
    O.$("f-id").value = f.id_prefix || "";
    O.$("f-id-end").value = f.id_suffix || "";
  }

  function local(iso) {
    if (!iso) return "";
    const date = new Date(iso);
    if (isNaN(date)) return "";
    const pad = (n) => String(n).padStart(2, "0");
    return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}` +
      `T${pad(date.getHours())}:${pad(date.getMinutes())}`;
  }

  function fromInputs() {
    const params = new URLSearchParams();
    const set = (name, value) => value && params.set(name, value);
    set("status", O.$("f-status").value);
    set("workflow", O.$("f-workflow").value.trim());
    set("trigger", O.$("f-trigger").value);
    const after = O.$("f-after").value;
    const before = O.$("f-before").value;
    if (after) set("created_after", new Date(after).toISOString());
    if (before) set("created_before", new Date(before).toISOString());
    set("id_prefix", O.$("f-id").value.trim());
    // Ids begin with the time they were made: their last characters tell recent ones apart.
    set("id_suffix", O.$("f-id-end").value.trim());
    return params;
  }

  function query(extra) {
    const params = new URLSearchParams(filters());
    for (const [k, v] of Object.entries(extra || {})) if (v !== null) params.set(k, v);
    return params.toString();
  }

  async function load() {
    if (loading) {
      dirty = true;
      return;
    }
    loading = true;
    try {
      const cursor = cursors[page];
      const generation = ++loads;
      const [list, counts] = await Promise.all([
        O.api("GET", `/v1/workflows?${query({ limit: PAGE, cursor })}`),
        O.api("GET", `/v1/stats/executions?${query()}`),
      ]);
      render(list);
      renderCounts(counts);
      // The chart over time takes longer (it counts every execution of the range): it is
      // asked for once the list is shown, so that the list never waits for it.
      O.api("GET", `/v1/stats/executions?${query({ buckets: 48 })}`)
        .then((answer) => {
          if (generation !== loads) return;
          renderSeries(answer.series);
          document.body.dataset.chart = "shown";
        })
        .catch(O.report);
      cursors[page + 1] = list.next_cursor;
      O.$("next").disabled = !list.next_cursor;
      O.$("prev").disabled = page === 0;
      O.$("page-no").textContent = `page ${page + 1}`;
      if (!document.body.dataset.loaded) {
        // When the first list and counts were shown, on the page's clock (0: navigation).
        document.body.dataset.loadedMs = String(Math.round(performance.now()));
        document.body.dataset.loaded = "true";
      }
    } catch (error) {
      O.report(error);
    } finally {
      loading = false;
      if (dirty) {
        dirty = false;
        setTimeout(load, 250);
      }
    }
  }

  function render(list) {
    const rows = O.clear(O.$("rows"));
    for (const item of list.items) {
      const took = O.span(item.started_at, item.finished_at);
      rows.append(
        O.el("tr", { "data-id": item.execution_id, "data-status": item.status },
          O.el("td", { class: "mono" }, O.link("execution", item.execution_id)),
          O.el("td", {}, item.workflow ? O.link("definition", item.workflow) : ""),
          O.el("td", {}, item.version || ""),
          O.el("td", {}, O.badge(item.status)),
          O.el("td", {}, item.trigger),
          O.el("td", {}, O.time(item.created_at)),
          O.el("td", {}, O.time(item.started_at)),
          O.el("td", {}, took === null ? "" : O.duration(took)),
        ),
      );
    }
    O.$("empty").hidden = list.items.length > 0;
  }

  function renderCounts(counts) {
    const box = O.clear(O.$("counts"));
    box.append(O.el("span", { class: "count total" }, `${counts.total} total`));
    for (const [state, n] of Object.entries(counts.by_status)) {
      const pick = () => {
        O.$("f-status").value = state;
        apply();
      };
      box.append(
        O.el("button", { type: "button", class: `count s-${state.toLowerCase()}`, onclick: pick },
          `${state} ${n}`),
      );
    }
  }

  // Stacked bars: one per time span, one colour per state, scaled to the busiest span.
  function renderSeries(series) {
    const box = O.clear(O.$("over-time"));
    if (!series) return;
    const NS = "http://www.w3.org/2000/svg";
    const make = (tag, attrs, text) => {
      const node = document.createElementNS(NS, tag);
      for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
      if (text !== undefined) node.textContent = text;
      return node;
    };
    const totals = series.buckets.map((b) => Object.values(b.by_status).reduce((a, n) => a + n, 0));
    const top = Math.max(1, ...totals);
    const W = 960;
    const H = 70;
    const step = W / series.buckets.length;
    const svg = make("svg", { viewBox: `0 0 ${W} ${H}`, class: "series", preserveAspectRatio: "none" });
    series.buckets.forEach((b, i) => {
      let y = H;
      for (const [state, n] of Object.entries(b.by_status)) {
        const h = (n / top) * H;
        y -= h;
        const bar = make("rect", { x: i * step + 1, y, width: Math.max(1, step - 2), height: h, class: `c-${state.toLowerCase()}` });
        bar.append(make("title", {}, `${O.time(b.start)}: ${state} ${n}`));
        svg.append(bar);
      }
    });
    box.append(svg, O.el("div", { class: "axis muted" },
      O.el("span", {}, O.time(series.start)), O.el("span", {}, O.time(series.end))));
  }

  function apply(event) {
    if (event) event.preventDefault();
    const params = fromInputs();
    history.replaceState(null, "", params.toString() ? `?${params}` : location.pathname);
    cursors = [null];
    page = 0;
    load();
  }

  let pending = null;
  function changed() {
    // Only the first page moves with new executions; a later page is refreshed on request.
    if (page !== 0 || pending) return;
    pending = setTimeout(() => {
      pending = null;
      load();
    }, 1000);
  }

  O.onReady(() => {
    toInputs();
    O.$("filters").addEventListener("submit", apply);
    O.$("clear").addEventListener("click", () => {
      const fields = [
        "f-status", "f-workflow", "f-trigger", "f-after", "f-before", "f-id", "f-id-end",
      ];
      for (const id of fields) O.$(id).value = "";
      apply();
    });
    O.$("next").addEventListener("click", () => {
      page += 1;
      load();
    });
    O.$("prev").addEventListener("click", () => {
      page = Math.max(0, page - 1);
      load();
    });
    O.$("start-row").hidden = !O.can("operator");
    load();
    const types = LIVE_TYPES.map((t) => `type=${encodeURIComponent(t)}`).join("&");
    O.stream(`/v1/events/stream?tail=true&${types}`, changed, (state) => {
      O.$("live-text").textContent = state;
      O.$("live-dot").className = `dot ${state}`;
    });
  });
})();
