// Operations: health and the governance controls, the cluster (scale-out), the dead letter
// queue (admin: retry, drop) and the audit trail (filter, verify the chain).
"use strict";

(() => {
  // A table of a list of objects, or of an object of objects (its keys first); null else.
  function table(value) {
    const rows = Array.isArray(value)
      ? value.filter((v) => v && typeof v === "object")
      : value && typeof value === "object"
        ? Object.entries(value).filter(([, v]) => v && typeof v === "object" && !Array.isArray(v)).map(([k, v]) => ({ name: k, ...v }))
        : [];
    if (!rows.length) return null;
    const columns = [...new Set(rows.flatMap((r) => Object.keys(r)))].slice(0, 12);
    const cell = (v) => (v !== null && typeof v === "object" ? JSON.stringify(v) : v === undefined || v === null ? "" : String(v));
    return O.el("table", { class: "grid small" },
      O.el("thead", {}, O.el("tr", {}, columns.map((c) => O.el("th", {}, c)))),
      O.el("tbody", {}, rows.map((r) => O.el("tr", {}, columns.map((c) => O.el("td", {}, cell(r[c])))))));
  }

  async function loadHealth() {
    const facts = O.clear(O.$("health"));
    const cluster = O.clear(O.$("cluster"));
    let health;
    try {
      health = await O.api("GET", "/v1/health");
    } catch (error) {
      // Degraded health is a 503 whose body is the same report.
      if (!(error.problem && error.problem.checks)) {
        facts.append(O.el("dd", { class: "error" }, error.message));
        return;
      }
      health = error.problem;
    }
    facts.append(O.el("dt", {}, "status"), O.el("dd", {}, O.el("span", { class: `badge c-state-${health.status === "ok" ? "on" : "degraded"}` }, health.status)));
    facts.append(O.el("dt", {}, "version"), O.el("dd", {}, health.version));
    for (const [name, check] of Object.entries(health.checks || {})) {
      const scalars = Object.entries(check.info || {})
        .filter(([, v]) => v === null || typeof v !== "object")
        .map(([k, v]) => `${k} ${v}`).join(", ");
      facts.append(O.el("dt", {}, name), O.el("dd", { class: check.status === "ok" ? "" : "error" },
        `${check.status}${check.detail ? ": " + check.detail : ""}${scalars ? " (" + scalars + ")" : ""}`));
      for (const [key, value] of Object.entries(check.info || {})) {
        const grid = table(value);
        if (grid) cluster.append(O.el("h4", {}, `${name}: ${key}`), grid);
      }
    }
    if (!cluster.firstChild) cluster.append(O.el("p", { class: "muted" }, "Embedded mode: one process runs everything."));
    const rows = O.clear(O.$("compliance"));
    if (!O.can("admin")) {
      rows.append(O.el("tr", {}, O.el("td", { colspan: 3, class: "muted" }, "The state of the governance controls needs the admin role.")));
      return;
    }
    try {
      const compliance = await O.api("GET", "/health/compliance");
      const controls = compliance.controls || compliance;
      for (const [k, v] of Object.entries(controls)) {
        const item = v && typeof v === "object" ? v : { state: String(v) };
        const state = String(item.state || item.status || "");
        rows.append(O.el("tr", { "data-control": item.control || k },
          O.el("td", {}, item.control || k),
          O.el("td", {}, O.el("span", { class: `badge c-state-${state === "on" ? "on" : state === "off" ? "off" : "degraded"}` }, state)),
          O.el("td", {}, item.detail || "")));
      }
    } catch (error) {
      rows.append(O.el("tr", {}, O.el("td", { colspan: 3, class: "muted" }, error.message)));
    }
  }

  async function loadDlq() {
    const rows = O.clear(O.$("dlq"));
    const note = O.$("dlq-note");
    if (!O.can("admin")) {
      O.$("dlq-card").hidden = true;
      return;
    }
    try {
      const page = await O.api("GET", "/v1/admin/dlq?limit=100");
      for (const d of page.items) {
        const act = (verb, method, path) => O.button(verb, async () => {
          try {
            const answer = await O.api(method, path);
            O.toast(answer && answer.message ? answer.message : `${verb}: ${d.id}`);
            await loadDlq();
          } catch (error) {
            O.report(error);
          }
        }, { "data-action": verb.toLowerCase(), class: verb === "Drop" ? "danger" : "" });
        const entry = `/v1/admin/dlq/${encodeURIComponent(d.id)}`;
        rows.append(O.el("tr", { "data-entry": d.id },
          O.el("td", { class: "mono" }, `${d.id} (${d.kind})`),
          O.el("td", {}, d.execution_id ? O.link("execution", d.execution_id) : ""),
          O.el("td", {}, d.node_id || ""),
          O.el("td", {}, `[${d.category}] ${d.message}`),
          O.el("td", {}, show(entry), act("Retry", "POST", `${entry}/retry`), act("Drop", "DELETE", entry))));
      }
      note.textContent = page.items.length ? "" : "Empty.";
    } catch (error) {
      note.textContent = error.message;
    }
  }

  // A dead letter's whole record (traceback, payload) under the table, as text.
  function show(path) {
    return O.button("Show", async () => {
      try {
        const entry = await O.api("GET", path);
        const box = O.clear(O.$("dlq-entry"));
        box.append(O.el("pre", { class: "source", id: "dlq-shown" }, O.pretty(entry)));
      } catch (error) {
        O.report(error);
      }
    }, { "data-action": "show" });
  }

  async function loadAudit(event) {
    if (event) event.preventDefault();
    if (!O.can("admin")) {
      O.$("audit-card").hidden = true;
      return;
    }
    const params = new URLSearchParams();
    for (const [k, v] of new FormData(O.$("audit-filter")).entries()) if (v) params.set(k, v);
    params.set("limit", "200");
    const rows = O.clear(O.$("audit"));
    try {
      const page = await O.api("GET", `/v1/audit?${params}`);
      O.$("audit-state").textContent = page.enabled ? "" : "The audit trail is off.";
      for (const r of page.records) {
        rows.append(O.el("tr", {},
          O.el("td", {}, r.seq), O.el("td", {}, O.time(r.at * 1000)), O.el("td", {}, r.actor || ""),
          O.el("td", {}, r.action),
          O.el("td", {}, r.execution_id ? O.link("execution", r.execution_id) : "", r.node_id ? ` ${r.node_id}` : ""),
          O.el("td", {}, r.outcome || "")));
      }
    } catch (error) {
      O.$("audit-state").textContent = error.message;
    }
  }

  async function verify() {
    try {
      const v = await O.api("GET", "/v1/audit/verify");
      O.$("audit-state").textContent = v.ok
        ? `Chain verified: ${v.records} records, good up to #${v.verified_up_to}.`
        : `Chain BROKEN after #${v.verified_up_to}: ${v.breaks.map((b) => `#${b.seq} ${b.kind}: ${b.message}`).join("; ")}`;
    } catch (error) {
      O.$("audit-state").textContent = error.message;
    }
  }

  O.onReady(async () => {
    O.$("audit-filter").addEventListener("submit", loadAudit);
    O.$("audit-verify").addEventListener("click", verify);
    await Promise.all([loadHealth(), loadDlq(), loadAudit()]);
  });
})();
