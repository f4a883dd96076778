// One workflow: its versions, the graph of each, its source as submitted and in canonical
// form, its event triggers, and a start form generated from its declared inputs (types,
// required, defaults).
"use strict";

(() => {
  const name = document.body.dataset.subject;
  let current = null;

  function field(key, input) {
    const type = input.type || "string";
    const id = `in-${key}`;
    let control;
    if (type === "boolean") {
      control = O.el("select", { id, name: key }, O.el("option", { value: "" }, "(default)"), O.el("option", {}, "true"), O.el("option", {}, "false"));
      if (input.default !== null && input.default !== undefined) control.value = String(input.default);
    } else if (type === "object" || type === "array") {
      control = O.el("textarea", { id, name: key, rows: 3, placeholder: "JSON" });
      if (input.default !== null && input.default !== undefined) control.value = JSON.stringify(input.default);
    } else {
      control = O.el("input", { id, name: key, type: type === "integer" || type === "number" ? "number" : "text", step: type === "number" ? "any" : null });
      if (input.default !== null && input.default !== undefined) control.value = String(input.default);
    }
    if (input.required) control.required = true;
    control.dataset.type = type;
    return O.el("label", { class: "field" },
      O.el("span", {}, `${key}${input.required ? " *" : ""} (${type})`), control,
      input.description ? O.el("small", { class: "muted" }, input.description) : null);
  }

  function readInputs(spec) {
    // No prototype: an input called "__proto__" is sent like any other.
    const values = Object.create(null);
    for (const [key, input] of Object.entries(spec.inputs || {})) {
      const control = document.getElementById(`in-${key}`);
      const raw = control.value;
      if (raw === "") continue;
      const type = input.type || "string";
      if (type === "integer") values[key] = parseInt(raw, 10);
      else if (type === "number") values[key] = Number(raw);
      else if (type === "boolean") values[key] = raw === "true";
      else if (type === "object" || type === "array") {
        try {
          values[key] = JSON.parse(raw);
        } catch (error) {
          throw new Error(`input ${key}: not valid JSON (${error.message})`);
        }
      } else values[key] = raw;
    }
    return values;
  }

  async function show(version) {
    const query = version ? `?version=${encodeURIComponent(version)}` : "";
    const sep = query ? "&" : "?";
    current = await O.api("GET", `/v1/definitions/${encodeURIComponent(name)}${query}${sep}include_source=true`);
    const spec = current.spec;
    Dag.draw(O.$("graph"), Dag.nodesOf(spec), {});
    O.$("d-source").textContent = O.pretty(spec);
    // The text as it was submitted (comments, order, anchors kept), as text.
    O.$("d-submitted-format").textContent = current.source_format;
    O.$("d-submitted").textContent = current.source === null || current.source === undefined
      ? "(no text kept for this version)"
      : O.visible(current.source); // a bidi override in a comment must not hide code
    const fields = O.clear(O.$("start-fields"));
    for (const [key, input] of Object.entries(spec.inputs || {})) fields.append(field(key, input));
    O.$("start-form").hidden = !O.can("operator");
    const triggers = O.clear(O.$("d-triggers"));
    for (const t of spec.triggers || spec.on || []) triggers.append(O.el("li", {}, O.pretty(t)));
    if (!triggers.firstChild) triggers.append(O.el("li", { class: "muted" }, "none declared"));
  }

  O.onReady(async () => {
    O.append(O.clear(O.$("d-name")), [O.text(name)]);
    const versions = await O.api("GET", `/v1/definitions?name=${encodeURIComponent(name)}&limit=500`);
    const select = O.$("d-version");
    for (const d of versions.items) select.append(O.el("option", { value: d.version }, `${d.version} · ${O.time(d.created_at)}`));
    await show(null);
    select.value = current.version;
    select.addEventListener("change", () => show(select.value).catch(O.report));
    O.$("start-form").addEventListener("submit", async (event) => {
      event.preventDefault();
      O.$("start-error").textContent = "";
      try {
        const body = { version: current.version, input_params: readInputs(current.spec) };
        const answer = await O.api("POST", `/v1/definitions/${encodeURIComponent(name)}/executions`, body);
        location.assign(`/ui/executions/${encodeURIComponent(answer.execution_id)}`);
      } catch (error) {
        const items = (error.problem && error.problem.errors) || [];
        O.$("start-error").textContent = error.message + (items.length ? ": " + items.map((i) => i.message).join("; ") : "");
      }
    });
  });
})();
