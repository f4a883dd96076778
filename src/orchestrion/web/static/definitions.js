// Stored definitions, schedules, and validating a pasted or loaded definition (nothing is
// stored; errors are listed with their line).
"use strict";

(() => {
  async function loadDefinitions() {
    const page = await O.api("GET", "/v1/definitions?limit=500");
    const rows = O.clear(O.$("def-rows"));
    for (const d of page.items) {
      rows.append(O.el("tr", { "data-name": d.name },
        O.el("td", {}, O.link("definition", d.name)),
        O.el("td", {}, d.version), O.el("td", {}, d.nodes),
        O.el("td", {}, `${d.source_format} (${d.dialect})`), O.el("td", {}, d.trust),
        O.el("td", {}, O.time(d.created_at))));
    }
  }

  async function loadSchedules() {
    const rows = O.clear(O.$("schedule-rows"));
    let list;
    try {
      list = await O.api("GET", "/v1/schedules");
    } catch (error) {
      rows.append(O.el("tr", {}, O.el("td", { colspan: 6, class: "muted" }, error.message)));
      return;
    }
    for (const s of list.schedules) {
      // The buttons the role may use (the API refuses the others all the same): pause or
      // resume, fire once now, delete.
      const actions = O.el("td", { class: "row-actions" });
      if (O.can("operator")) {
        const path = `/v1/schedules/${encodeURIComponent(s.id)}`;
        const act = (label, method, suffix, done, confirmText) => O.button(label, async () => {
          if (confirmText && !confirm(confirmText)) return;
          try {
            const answer = await O.api(method, path + suffix);
            O.toast(done(answer));
            await loadSchedules();
          } catch (error) {
            O.report(error);
          }
        }, { "data-action": label.toLowerCase().replace(/ .*/, ""), class: label === "Delete" ? "danger" : "" });
        const verb = s.state === "paused" ? "Resume" : "Pause";
        actions.append(
          act(verb, "POST", `/${verb.toLowerCase()}`, (a) => `${s.id}: ${a.state}`),
          act("Trigger now", "POST", "/trigger", () => `${s.id}: fired, it starts on the scheduler's next pass`),
          act("Delete", "DELETE", "", () => `${s.id}: deleted`,
            `Delete the schedule ${s.id}? A new version of its workflow that declares it brings it back.`));
      }
      const last = (s.recent_firings || [])[0];
      rows.append(O.el("tr", { "data-schedule": s.id },
        O.el("td", {}, `${s.id} · ${s.schedule} (${s.timezone})`),
        O.el("td", {}, O.link("definition", s.definition_name)),
        O.el("td", { class: "state" }, s.state), O.el("td", {}, O.time(s.next_tick_at)),
        O.el("td", {}, last && last.execution_id ? O.link("execution", last.execution_id, O.time(last.tick_at)) : O.time(s.last_tick_at)),
        actions));
    }
    if (!list.schedules.length) rows.append(O.el("tr", {}, O.el("td", { colspan: 6, class: "muted" }, "No schedule.")));
  }

  async function validate() {
    const text = O.$("validate-text").value;
    const out = O.clear(O.$("validate-result"));
    const json = text.trimStart().startsWith("{");
    try {
      const report = await O.api("POST", "/v1/workflow/validate", text, { contentType: json ? "application/json" : "application/yaml" });
      out.append(O.el("li", { class: "ok" }, `Valid: ${report.name}, ${report.nodes} nodes`));
      for (const w of report.warnings) out.append(O.el("li", { class: "warn" }, `warning: ${w}`));
    } catch (error) {
      const items = (error.problem && error.problem.errors) || [];
      if (!items.length) out.append(O.el("li", { class: "error" }, error.message));
      for (const item of items) {
        const where = [item.line ? `line ${item.line}` : null, item.node ? `node ${item.node}` : null, item.field].filter(Boolean).join(", ");
        out.append(O.el("li", { class: "error", "data-line": item.line || "" }, where ? `${where}: ${item.message}` : item.message));
      }
    }
  }

  O.onReady(async () => {
    O.$("validate").addEventListener("click", validate);
    O.$("validate-file").addEventListener("change", async (event) => {
      const file = event.target.files[0];
      if (file) O.$("validate-text").value = await file.text();
    });
    await Promise.all([loadDefinitions(), loadSchedules()]);
  });
})();
