// One execution: its DAG with live node states, a node's panel (output, error, attempts,
// idempotency key, logs), the timeline of attempts, replay of the journal, and the actions
// the signed-in role may take. Everything comes from the public API and its event stream.
"use strict";

(() => {
  const FINAL = new Set(["COMPLETED", "FAILED", "CANCELLED"]);
  const id = document.body.dataset.subject;
  const base = `/v1/workflows/${encodeURIComponent(id)}`;
  let detail = null;
  let spec = null;
  let graph = null;
  const journal = []; // every event seen, oldest first
  // The journal by node (attempts, timeline) and each node's latest state: kept as events
  // arrive, so a redraw reads a node's own events, never the whole journal again. Maps, as
  // every table keyed by a workflow's names here: a node may be called "__proto__".
  const byNode = new Map();
  const liveState = new Map();
  let replayAt = null; // null: live; else how many journal events are applied
  let selected = null;
  const drafts = new Map(); // node -> an approval comment typed, not sent: re-renders keep it
  let source = null;
  let refreshing = null;

  // ------------------------------------------------------------------ loading

  // The execution's nodes as a Map (node id -> its detail).
  let nodeInfo = new Map();

  async function loadDetail() {
    detail = await O.api("GET", base);
    nodeInfo = new Map(Object.entries(detail.nodes || {}));
    if (FINAL.has(detail.status) && source && !source.closed) {
      // The server ends a final execution's stream; the browser would reconnect for ever.
      setTimeout(() => source && FINAL.has(detail.status) && source.close(), 1500);
    }
    renderHead();
    if (replayAt === null) paintLive();
    if (selected) renderPanel(selected);
  }

  // The page holds at most this many journal events (replay, timeline, attempts): a run
  // with more is shown live from its state, and its replay covers the first ones only.
  const MAX_EVENTS = 50000;

  async function loadJournal() {
    let after = journal.length ? journal[journal.length - 1].seq : 0;
    while (journal.length < MAX_EVENTS) {
      const page = await O.api("GET", `${base}/events?after=${after}&limit=1000`);
      for (const event of page.items) record(event);
      if (page.items.length < 1000) return;
      after = page.next_after;
    }
    O.toast(`This run has more than ${MAX_EVENTS} events: replay and timeline show the first ${MAX_EVENTS}.`);
  }

  function refreshSoon() {
    if (refreshing) return;
    refreshing = setTimeout(async () => {
      refreshing = null;
      try {
        await loadDetail();
      } catch (error) {
        O.report(error);
      }
    }, 300);
  }

  // One event into the page's state: the journal, its index by node, the node's state.
  function record(event) {
    if (event.node_id && NODE_STATE.has(event.type)) liveState.set(event.node_id, NODE_STATE.get(event.type));
    if (journal.length >= MAX_EVENTS) return;
    journal.push(event);
    if (!event.node_id) return;
    let own = byNode.get(event.node_id);
    if (!own) byNode.set(event.node_id, (own = []));
    own.push(event);
  }

  // Live events change the state at once, the page at most every REDRAW_MS, in an animation
  // frame: a run of 1,000 nodes sends thousands of events a second, which one redraw each
  // would turn into minutes of a frozen page.
  const REDRAW_MS = 250;
  const dirty = new Set(); // nodes whose state changed since the last redraw
  let redrawAt = 0;
  let redrawing = false;

  function redrawSoon() {
    if (redrawing) return;
    redrawing = true;
    const wait = Math.max(0, redrawAt + REDRAW_MS - performance.now());
    setTimeout(() => requestAnimationFrame(redraw), wait);
  }

  function redraw() {
    redrawing = false;
    redrawAt = performance.now();
    updateReplayRange();
    if (replayAt === null) for (const node of dirty) paintNode(node, liveState.get(node) || "PENDING");
    dirty.clear();
    renderGantt();
    refreshSoon();
  }

  function follow() {
    const after = journal.length ? journal[journal.length - 1].seq : 0;
    source = O.stream(`${base}/events/stream?after=${after}`, (event) => {
      if (journal.length && event.seq <= journal[journal.length - 1].seq) return;
      record(event);
      if (event.node_id) dirty.add(event.node_id);
      redrawSoon();
      if (event.type.startsWith("execution.") && FINAL.has(event.type.split(".")[1].toUpperCase())) {
        // The server ends the stream after the final event: do not reconnect to it.
        setTimeout(() => source && source.close(), 1000);
      }
    });
  }

  // ------------------------------------------------------------------ head and actions

  function renderHead() {
    O.$("x-id").textContent = detail.execution_id;
    const status = O.$("x-status");
    status.textContent = detail.status;
    status.className = `badge s-${detail.status.toLowerCase()}`;
    const took = O.span(detail.started_at, detail.finished_at);
    // The workflow's name and version are the submitter's text: each isolated, so neither
    // can reorder or imitate the facts after it.
    O.append(O.clear(O.$("x-meta")), [
      O.text(detail.workflow), " v", O.text(detail.version),
      ` · created ${O.time(detail.created_at)}` + (took === null ? "" : ` · ${O.duration(took)}`),
      " · ", O.el("span", { id: "x-trust" }, detail.trust),
    ]);
    const links = O.clear(O.$("x-links"));
    links.append(O.el("span", {}, "Workflow: "), O.link("definition", detail.workflow));
    if (detail.parent_execution_id) {
      links.append(O.el("span", {}, " · Parent: "), O.link("execution", detail.parent_execution_id));
      if (detail.parent_node_id) links.append(O.el("span", { class: "muted" }, " (node ", O.text(detail.parent_node_id), ")"));
    }
    for (const [node, child] of childrenOf()) {
      links.append(O.el("span", {}, " · Child (", O.text(node), "): "), O.link("execution", child));
    }
    if (detail.error) {
      links.append(O.el("div", { class: "error" }, `Error: ${errorText(detail.error)}`));
    }
    renderActions();
  }

  // Children started by workflow nodes: named in the node's output once it is done, and in
  // its node.waiting event while it waits for the child.
  function childrenOf() {
    const found = new Map();
    const take = (node, value) => {
      const child = value && typeof value === "object" ? value.child_execution_id : null;
      if (typeof child === "string" && child) found.set(node, child);
    };
    for (const [node, events] of byNode) {
      for (const e of events) if (e.type === "node.waiting") take(node, e.data);
    }
    for (const [node, info] of nodeInfo) take(node, info.output);
    return found;
  }

  function renderActions() {
    const box = O.clear(O.$("x-actions"));
    if (!O.can("operator")) return;
    const s = detail.status;
    const act = (label, method, path, confirmText) =>
      O.button(label, async () => {
        if (confirmText && !confirm(confirmText)) return;
        try {
          const answer = await O.api(method, path);
          O.toast(answer ? answer.message : `${label}: done`);
          await reload();
        } catch (error) {
          O.report(error);
        }
      }, { id: `act-${label.toLowerCase()}` });
    if (!FINAL.has(s)) box.append(act("Cancel", "DELETE", base, "Cancel this execution?"));
    if (s === "RUNNING" || s === "WAITING") box.append(act("Pause", "POST", `${base}/pause`));
    if (s === "PAUSED") box.append(act("Resume", "POST", `${base}/resume`));
    if (s === "FAILED" || s === "CANCELLED") box.append(act("Retry", "POST", `${base}/retry`));
  }

  async function reload() {
    await loadDetail();
    // A final execution's page follows no stream; one that runs again (retry, re-run) must.
    if ((!source || source.closed) && !FINAL.has(detail.status)) {
      await loadJournal();
      updateReplayRange();
      renderGantt();
      follow();
      refreshSoon(); // it may have ended while the journal was read: no event would say so
    }
  }

  // ------------------------------------------------------------------ graph

  function drawGraph() {
    const nodes = Dag.nodesOf(spec);
    const t0 = performance.now();
    graph = Dag.draw(O.$("graph"), nodes, { onSelect: select });
    const ms = Math.round(performance.now() - t0);
    O.$("graph-info").textContent = `${nodes.length} nodes · drawn in ${ms} ms`;
    O.$("zoom-in").addEventListener("click", graph.zoomIn);
    O.$("zoom-out").addEventListener("click", graph.zoomOut);
    O.$("zoom-fit").addEventListener("click", graph.fit);
  }

  function progressNote(info) {
    if (!info || !info.progress) return "";
    const p = info.progress;
    return `${p.done}/${p.total}` + (p.failed ? ` (${p.failed} failed)` : "");
  }

  function childNote(child) {
    return `${child.nodes_done}/${child.nodes_total} done` +
      (child.nodes_failed ? `, ${child.nodes_failed} failed` : "") + ` · ${child.status}`;
  }

  // A sub-workflow is one node: its child's progress on it, with a link to the child's page;
  // a map node's items likewise (without a link: its items are not executions).
  function paintProgress(node, info) {
    if (info.child) {
      const c = info.child;
      graph.progress(node, {
        text: childNote(c),
        fraction: c.nodes_total ? c.nodes_done / c.nodes_total : 0,
        href: `/ui/executions/${encodeURIComponent(c.execution_id)}`,
      });
    } else if (info.progress && info.progress.total) {
      graph.progress(node, { text: null, fraction: info.progress.done / info.progress.total });
    } else graph.progress(node, null);
  }

  // A failed compensation leaves its node COMPLETED (its action was not undone): it is drawn
  // as a failure of its own, never as a completed node.
  function shownState(info) {
    return info && info.compensation === "failed" ? "COMPENSATION_FAILED" : (info && info.state) || "PENDING";
  }

  function paintLive() {
    for (const [node, info] of nodeInfo) {
      const note = info.compensation === "failed" ? "not undone" : progressNote(info);
      graph.state(node, shownState(info), note || (info.attempt > 1 ? `attempt ${info.attempt}` : ""));
      paintProgress(node, info);
    }
    watchChildren();
  }

  // A child's progress, and a map's items, change nothing in this execution's journal: while
  // a child or a map runs, the page reads the execution again every second (one request).
  let childTimer = null;
  const mapNodes = () => new Set(spec.dag.nodes.filter((n) => n.handler === "map").map((n) => n.id));
  function watchChildren() {
    const maps = mapNodes();
    const running = [...nodeInfo].some(([node, n]) =>
      (n.child && !FINAL.has(n.child.status)) || (maps.has(node) && n.state === "RUNNING"));
    if (!running || childTimer || document.hidden) return;
    childTimer = setTimeout(() => {
      childTimer = null;
      refreshSoon();
    }, 1000);
  }

  function paintNode(node, state) {
    const info = nodeInfo.get(node);
    graph.state(node, state, progressNote(info));
  }

  // ------------------------------------------------------------------ replay

  const NODE_STATE = new Map(Object.entries({
    "node.queued": "QUEUED", "node.started": "RUNNING", "node.completed": "COMPLETED",
    "node.failed": "FAILED", "node.skipped": "SKIPPED", "node.waiting": "WAITING",
    "node.woken": "RUNNING", "node.cancelled": "CANCELLED", "node.compensated": "COMPENSATED",
    "node.compensation_failed": "COMPENSATION_FAILED", "node.reset": "PENDING",
    "node.compensation_reset": "COMPLETED", "node.retry_scheduled": "RETRYING",
  }));

  function statesAt(count) {
    const states = new Map();
    let execution = "PENDING";
    for (let i = 0; i < count; i++) {
      const e = journal[i];
      if (e.node_id && NODE_STATE.has(e.type)) states.set(e.node_id, NODE_STATE.get(e.type));
      else if (e.type.startsWith("execution.")) {
        const word = e.type.split(".")[1];
        // A compensation is never paused: one that begins lifts a pause.
        if (["started", "running", "resumed", "retried", "recovered", "compensating"].includes(word)) execution = "RUNNING";
        else if (["completed", "failed", "cancelled", "paused", "waiting"].includes(word)) execution = word.toUpperCase();
      }
    }
    return { states, execution };
  }

  function updateReplayRange() {
    const slider = O.$("replay");
    slider.max = String(journal.length);
    if (replayAt === null) slider.value = String(journal.length);
  }

  function replayTo(count) {
    replayAt = count;
    const { states, execution } = statesAt(count);
    for (const n of spec.dag.nodes) graph.state(n.id, states.get(n.id) || "PENDING", "");
    const at = count > 0 ? journal[count - 1] : null;
    O.$("replay-at").textContent = at
      ? `${count}/${journal.length} · ${O.time(at.at)} · ${at.type}${at.node_id ? " " + O.visible(at.node_id) : ""} · execution ${execution}`
      : `0/${journal.length} · before the start`;
    O.$("graph").classList.add("replaying");
  }

  function goLive() {
    replayAt = null;
    O.$("replay").value = String(journal.length);
    O.$("replay-at").textContent = "live";
    O.$("graph").classList.remove("replaying");
    if (detail) paintLive();
  }

  // ------------------------------------------------------------------ node panel

  function errorText(error) {
    if (!error) return "";
    if (typeof error === "string") return error;
    const parts = [];
    if (error.category) parts.push(`[${error.category}]`);
    if (error.type) parts.push(String(error.type));
    if (error.message) parts.push(String(error.message));
    return parts.length ? parts.join(" ") : O.pretty(error);
  }

  function attemptsOf(node) {
    const attempts = new Map();
    for (const e of byNode.get(node) || []) {
      if (!e.attempt) continue;
      const a = attempts.get(e.attempt) || { attempt: e.attempt, queued: null, started: null, ended: null, outcome: null, error: null, waited: [] };
      if (e.type === "node.queued") a.queued = e.at;
      else if (e.type === "node.started") a.started = e.at;
      else if (e.type === "node.waiting") a.waited.push({ from: e.at, to: null });
      else if (e.type === "node.woken" && a.waited.length) a.waited[a.waited.length - 1].to = e.at;
      else if (["node.completed", "node.failed", "node.skipped", "node.cancelled"].includes(e.type)) {
        a.ended = e.at;
        a.outcome = e.type.split(".")[1];
        if (e.data && e.data.error) a.error = e.data.error;
      } else if (e.type === "node.retry_scheduled") {
        // A failed attempt that will be retried: it ended here, with its own error.
        a.ended = a.ended || e.at;
        a.outcome = a.outcome || "failed, retry scheduled";
        if (e.data && e.data.error) a.error = e.data.error;
      }
      attempts.set(e.attempt, a);
    }
    return [...attempts.values()];
  }

  function section(title, ...body) {
    return O.el("section", { class: "panel-part" }, O.el("h3", {}, title), ...body);
  }

  function select(node) {
    selected = node;
    graph.select(node);
    renderPanel(node);
  }

  function renderPanel(node) {
    // Live updates re-render the panel: whoever is typing a comment keeps its text and focus.
    const typing = document.activeElement && document.activeElement.id === "decision-comment";
    const panel = O.clear(O.$("panel"));
    const info = nodeInfo.get(node) || {};
    const declared = spec.dag.nodes.find((n) => n.id === node) || {};
    panel.append(
      O.el("h2", { id: "panel-node" }, node),
      O.el("p", {}, O.badge(shownState(info)), " ", O.el("span", { class: "muted" }, declared.handler || "")),
    );
    const facts = O.el("dl", { class: "facts" });
    const fact = (k, v) => v !== null && v !== undefined && v !== "" && facts.append(O.el("dt", {}, k), O.el("dd", {}, v));
    fact("Attempt", info.attempt);
    fact("Started", O.time(info.started_at));
    fact("Finished", O.time(info.finished_at));
    fact("Duration", O.duration(info.duration_ms));
    fact("Waited", O.duration(info.waited_ms));
    fact("Waiting for", info.wait_reason);
    fact("Progress", progressNote(info));
    if (info.attempt) fact("Idempotency key", `${id}:${node}:${info.attempt}`);
    panel.append(facts);
    if (info.wait_reason === "approval" && info.state === "WAITING" && O.can("operator")) {
      const comment = O.el("input", {
        id: "decision-comment", placeholder: "comment (recorded)", maxlength: 2000,
        oninput: () => drafts.set(node, comment.value),
      });
      comment.value = drafts.get(node) || "";
      const decide = (verb) => O.button(verb === "approve" ? "Approve" : "Reject", async () => {
        try {
          const body = comment.value ? { comment: comment.value } : null;
          const answer = await O.api("POST", `${base}/nodes/${encodeURIComponent(node)}/${verb}`, body);
          drafts.delete(node);
          O.toast(answer.message);
          await reload();
        } catch (error) {
          O.report(error);
        }
      }, { id: `act-${verb}`, class: verb === "reject" ? "danger" : "" });
      panel.append(section("Approval", comment, decide("approve"), decide("reject")));
      if (typing) comment.focus();
    }
    const child = info.child ? info.child.execution_id : childrenOf().get(node);
    if (child) {
      // A sub-workflow is one node here; the execution's detail says how far its child got.
      const c = info.child;
      const status = c
        ? `${c.status} · ${c.nodes_done}/${c.nodes_total} nodes done` + (c.nodes_failed ? `, ${c.nodes_failed} failed` : "")
        : "";
      panel.append(section("Child execution", O.link("execution", child), " ",
        O.el("span", { class: "muted", id: "panel-child" }, status)));
    }
    if (info.error) {
      panel.append(section("Error", O.el("pre", { class: "error", id: "panel-error" }, errorText(info.error)),
        O.el("pre", { class: "source" }, O.pretty(info.error))));
    }
    panel.append(section("Output", O.el("pre", { class: "source", id: "panel-output" }, info.output === null || info.output === undefined ? "(none)" : O.pretty(info.output))));
    // The config as its attempt rendered it, fetched once per attempt start (re-renders
    // reuse the box): secrets stay as declared, a classified node's is masked for viewers.
    const renderedKey = `${node}#${info.attempt || 0}#${info.started_at || ""}`;
    if (rendered.key !== renderedKey) {
      rendered.key = renderedKey;
      rendered.box = O.el("pre", { class: "source", id: "panel-rendered" }, info.started_at ? "loading…" : "(not started)");
      if (info.started_at) loadRendered(node, info.attempt, rendered.box, renderedKey);
    }
    panel.append(section("Inputs (as rendered)", rendered.box));
    panel.append(section("Configuration (as declared)", O.el("pre", { class: "source" }, O.pretty(declared.config || {}))));
    // What the node read: its dependencies' outputs (masked as the API masks them).
    // A prototype-less object: a dependency called "__proto__" is a key like any other.
    const upstream = Object.create(null);
    for (const dep of declared.dependencies || []) {
      const out = nodeInfo.get(dep);
      if (out) upstream[dep] = out.output === undefined ? null : out.output;
    }
    if (Object.keys(upstream).length) {
      panel.append(section("Inputs (its dependencies' outputs)", O.el("pre", { class: "source", id: "panel-inputs" }, O.pretty(upstream))));
    }
    const attempts = attemptsOf(node);
    if (attempts.length) {
      const table = O.el("table", { class: "grid small" },
        O.el("thead", {}, O.el("tr", {}, ["#", "Started", "Took", "Outcome", "Error"].map((h) => O.el("th", {}, h)))));
      const tbody = O.el("tbody", {});
      for (const a of attempts) {
        tbody.append(O.el("tr", {},
          O.el("td", {}, a.attempt), O.el("td", {}, O.time(a.started)),
          O.el("td", {}, a.started && a.ended ? O.duration(Date.parse(a.ended) - Date.parse(a.started)) : ""),
          O.el("td", {}, a.outcome || (a.started ? "running" : "queued")),
          O.el("td", {}, errorText(a.error))));
      }
      table.append(tbody);
      panel.append(section("Attempts", table));
    }
    // The log box survives the panel's re-renders (one per change of the execution): its
    // lines were fetched once and the stream appends to it while the node runs.
    if (logs.node !== node) {
      if (logs.source) logs.source.close();
      logs.node = node;
      logs.source = null;
      logs.box = O.el("pre", { class: "source logs", id: "panel-logs" }, "loading…");
      loadLogs(node, logs.box);
    }
    panel.append(section("Logs", logs.box));
    if (O.can("operator") && FINAL.has(detail.status)) {
      panel.append(O.button("Re-run from this node", async () => {
        try {
          const answer = await O.api("POST", `${base}/retry?from_node=${encodeURIComponent(node)}`);
          O.toast(answer.message);
          await reload();
        } catch (error) {
          O.report(error);
        }
      }, { id: "act-rerun" }));
    }
  }

  const logs = { node: null, box: null, source: null };
  const rendered = { key: null, box: null };

  async function loadRendered(node, attempt, box, key) {
    try {
      const page = await O.api("GET", `${base}/nodes/${encodeURIComponent(node)}/inputs`);
      if (rendered.key !== key) return;
      const item = page.items.find((i) => i.attempt === attempt) || page.items[page.items.length - 1];
      if (!item) box.textContent = "(not recorded)";
      else if (item.inputs === null || item.inputs === undefined) box.textContent = "(empty config)";
      else box.textContent = (page.items.length > 1 ? `attempt ${item.attempt}\n` : "") + O.pretty(item.inputs);
    } catch (error) {
      box.textContent = error.status === 404 ? "(not available from this server)" : `(inputs: ${error.message})`;
    }
  }
  const logLine = (l) => `${l.at} #${l.attempt} ${l.level} ${l.logger}: ${l.message}`;

  async function loadLogs(node, box) {
    const path = `${base}/nodes/${encodeURIComponent(node)}/logs`;
    let after = 0;
    try {
      const lines = [];
      for (let i = 0; i < 20; i++) {
        const page = await O.api("GET", `${path}?after=${after}&limit=1000`);
        lines.push(...page.items);
        after = page.next_after;
        if (page.items.length < 1000) break;
      }
      box.textContent = lines.length ? O.visible(lines.map(logLine).join("\n")) : "(no log lines)";
    } catch (error) {
      box.textContent = error.status === 404 ? "(logs are not available from this server)" : `(logs: ${error.message})`;
      return;
    }
    if (FINAL.has(detail.status) || logs.node !== node) return;
    // Still running: follow its lines; the stream ends once the execution is final.
    let empty = box.textContent === "(no log lines)";
    let delay = 1000;
    const followFrom = () => {
      const source = O.openSource(`${path}/stream?after=${after}`);
      logs.source = source;
      source.onopen = () => {
        delay = 1000;
      };
      source.addEventListener("log", (message) => {
        if (message.lastEventId) after = message.lastEventId;
        const line = O.visible(logLine(JSON.parse(message.data)));
        // A line is added as a text node of its own: the box's text is never copied again.
        if (empty) box.textContent = line;
        else box.append(document.createTextNode(`\n${line}`));
        empty = false;
      });
      source.onerror = () => {
        if (FINAL.has(detail.status)) {
          source.close();
          return;
        }
        // Refused (429, 503) or answered by a restarting server, the browser gives up for
        // good: follow again later, from the last line shown, while the panel shows the node.
        if (source.readyState !== EventSource.CLOSED) return;
        setTimeout(() => {
          if (logs.source === source && logs.node === node) followFrom();
        }, delay);
        delay = Math.min(delay * 2, 30000);
      };
    };
    followFrom();
  }

  // ------------------------------------------------------------------ timeline

  function renderGantt() {
    const box = O.$("gantt");
    const bars = [];
    let t0 = Infinity;
    let t1 = -Infinity;
    for (const n of spec.dag.nodes) {
      for (const a of attemptsOf(n.id)) {
        const start = Date.parse(a.started || a.queued);
        if (isNaN(start)) continue;
        const end = a.ended ? Date.parse(a.ended) : Date.now();
        bars.push({ node: n.id, a, start, end });
        t0 = Math.min(t0, start);
        t1 = Math.max(t1, end);
      }
    }
    while (box.firstChild) box.removeChild(box.firstChild);
    if (!bars.length) {
      box.append(O.el("p", { class: "muted" }, "No attempt yet."));
      return;
    }
    const shown = bars.slice(0, 400);
    const NS = "http://www.w3.org/2000/svg";
    const row = 18;
    const width = 900;
    const label = 180;
    const scale = (t) => label + ((t - t0) / Math.max(1, t1 - t0)) * (width - label - 10);
    const svg = document.createElementNS(NS, "svg");
    svg.setAttribute("viewBox", `0 0 ${width} ${shown.length * row + 24}`);
    svg.setAttribute("class", "gantt-svg");
    const make = (tag, attrs, text) => {
      const node = document.createElementNS(NS, tag);
      for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
      if (text !== undefined) node.textContent = text;
      return node;
    };
    shown.forEach((b, i) => {
      const y = i * row;
      svg.append(make("text", { x: 4, y: y + 13, class: "g-label" }, `${O.visible(b.node)} #${b.a.attempt}`));
      const x = scale(b.start);
      const bar = make("rect", { x, y: y + 3, width: Math.max(2, scale(b.end) - x), height: row - 6, class: `g-bar g-${(b.a.outcome || "running").split(",")[0]}` });
      bar.append(make("title", {}, `${O.visible(b.node)} attempt ${b.a.attempt}: ${O.duration(b.end - b.start)} ${b.a.outcome || "running"}`));
      svg.append(bar);
      for (const w of b.a.waited) {
        const from = scale(Date.parse(w.from));
        const to = scale(w.to ? Date.parse(w.to) : b.end);
        svg.append(make("rect", { x: from, y: y + 3, width: Math.max(1, to - from), height: row - 6, class: "g-wait" }));
      }
    });
    svg.append(make("text", { x: label, y: shown.length * row + 18, class: "g-label" }, `0 — ${O.duration(t1 - t0)}`));
    box.append(svg);
    if (bars.length > shown.length) box.append(O.el("p", { class: "muted" }, `first ${shown.length} of ${bars.length} attempts`));
  }

  // ------------------------------------------------------------------ start

  O.onReady(async () => {
    detail = await O.api("GET", base);
    nodeInfo = new Map(Object.entries(detail.nodes || {}));
    const definition = await O.api("GET", `/v1/definitions/${encodeURIComponent(detail.workflow)}?version=${encodeURIComponent(detail.version)}`);
    spec = definition.spec;
    drawGraph();
    renderHead();
    paintLive();
    await loadJournal();
    renderHead();
    updateReplayRange();
    renderGantt();
    O.$("replay").addEventListener("input", (e) => {
      const value = Number(e.target.value);
      if (value >= journal.length) goLive();
      else replayTo(value);
    });
    O.$("replay-live").addEventListener("click", goLive);
    document.addEventListener("visibilitychange", () => detail && watchChildren());
    if (!FINAL.has(detail.status)) {
      follow();
      refreshSoon(); // it may have ended while the journal was read: no event would say so
    }
    document.body.dataset.loadedMs = String(Math.round(performance.now()));
    document.body.dataset.loaded = "true";
  });
})();
