// Operations: health and the governance controls, the cluster (scale-out), the dead letter
// queue (admin: retry, drop) and the audit trail (filter, verify the chain).
"use strict";

(() => {
  async function loadHealth() {
    const facts = O.clear(O.$("health"));
    try {
      const health = await O.api("GET", "/v1/health");
      for (const [k, v] of Object.entries(health)) {
        if (v !== null && typeof v === "object") continue;
        facts.append(O.el("dt", {}, k), O.el("dd", {}, String(v)));
      }
      const cluster = {};
      for (const k of ["redis", "orchestrators", "workers", "queues", "dlq", "circuits", "checks"]) {
        if (health[k] !== undefined && health[k] !== null) cluster[k] = health[k];
      }
      O.$("cluster").textContent = Object.keys(cluster).length ? O.pretty(cluster) : "embedded mode: one process";
    } catch (error) {
      facts.append(O.el("dd", { class: "error" }, error.message));
    }
    const rows = O.clear(O.$("compliance"));
    if (!O.can("admin")) {
      rows.append(O.el("tr", {}, O.el("td", { colspan: 3, class: "muted" }, "The state of the governance controls needs the admin role.")));
      return;
    }
    try {
      const compliance = await O.api("GET", "/health/compliance");
      const controls = compliance.controls || compliance;
      for (const [k, v] of Object.entries(controls)) {
        const state = v && typeof v === "object" ? (v.state || v.status || (v.enabled ? "on" : "off")) : String(v);
        rows.append(O.el("tr", {}, O.el("td", {}, k), O.el("td", {}, String(state)), O.el("td", {}, v && typeof v === "object" ? O.pretty(v) : "")));
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
            await O.api(method, path);
            O.toast(`${verb}: ${d.id}`);
            await loadDlq();
          } catch (error) {
            O.report(error);
          }
        });
        const entry = `/v1/admin/dlq/${encodeURIComponent(d.id)}`;
        rows.append(O.el("tr", {},
          O.el("td", { class: "mono" }, `${d.id} (${d.kind})`),
          O.el("td", {}, d.execution_id ? O.link("execution", d.execution_id) : ""),
          O.el("td", {}, d.node_id || ""),
          O.el("td", {}, `[${d.category}] ${d.message}`),
          O.el("td", {}, act("Retry", "POST", `${entry}/retry`), act("Drop", "DELETE", entry))));
      }
      note.textContent = page.items.length ? "" : "Empty.";
    } catch (error) {
      note.textContent = error.message;
    }
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
