// The DAG view: a layered layout (longest path from the roots, then barycentre ordering to
// cut crossings), drawn as SVG, with zoom (wheel, buttons) and pan (drag). Linear in nodes
// and edges per sweep, so a 1,000-node workflow lays out in milliseconds. Node ids and labels
// are SVG text nodes: never markup.
"use strict";

const Dag = (() => {
  const NS = "http://www.w3.org/2000/svg";
  const W = 168;
  const H = 40;
  const GAP_X = 64;
  const GAP_Y = 16;

  function svg(tag, attrs) {
    const node = document.createElementNS(NS, tag);
    for (const [name, value] of Object.entries(attrs || {})) node.setAttribute(name, String(value));
    return node;
  }

  // nodes: [{id, deps: [...], label, handler}] -> {pos: Map(id -> {x, y, layer}), width, height}
  function layout(nodes) {
    const byId = new Map(nodes.map((n) => [n.id, n]));
    const children = new Map(nodes.map((n) => [n.id, []]));
    const indegree = new Map(nodes.map((n) => [n.id, 0]));
    for (const n of nodes) {
      for (const d of n.deps) {
        if (!byId.has(d)) continue;
        children.get(d).push(n.id);
        indegree.set(n.id, indegree.get(n.id) + 1);
      }
    }
    const layer = new Map();
    const queue = nodes.filter((n) => indegree.get(n.id) === 0).map((n) => n.id);
    for (const id of queue) layer.set(id, 0);
    for (let i = 0; i < queue.length; i++) {
      const id = queue[i];
      for (const c of children.get(id)) {
        layer.set(c, Math.max(layer.get(c) || 0, layer.get(id) + 1));
        indegree.set(c, indegree.get(c) - 1);
        if (indegree.get(c) === 0) queue.push(c);
      }
    }
    for (const n of nodes) if (!layer.has(n.id)) layer.set(n.id, 0); // a cycle: not ours to draw
    const layers = [];
    for (const n of nodes) {
      const l = layer.get(n.id);
      (layers[l] = layers[l] || []).push(n.id);
    }
    const order = new Map();
    const index = () => layers.forEach((ids) => ids.forEach((id, i) => order.set(id, i)));
    index();
    const parents = new Map(nodes.map((n) => [n.id, n.deps.filter((d) => byId.has(d))]));
    const centre = (ids) => ids.reduce((sum, id) => sum + order.get(id), 0) / ids.length;
    for (let sweep = 0; sweep < 4; sweep++) {
      const down = sweep % 2 === 0;
      const range = down ? layers.map((_, i) => i).slice(1) : layers.map((_, i) => i).reverse().slice(1);
      for (const l of range) {
        if (!layers[l]) continue;
        const weight = new Map();
        for (const id of layers[l]) {
          const near = down ? parents.get(id) : children.get(id);
          weight.set(id, near.length ? centre(near) : order.get(id));
        }
        layers[l].sort((a, b) => weight.get(a) - weight.get(b));
        layers[l].forEach((id, i) => order.set(id, i));
      }
    }
    const tallest = Math.max(1, ...layers.map((ids) => (ids ? ids.length : 0)));
    const pos = new Map();
    layers.forEach((ids, l) => {
      if (!ids) return;
      const offset = ((tallest - ids.length) * (H + GAP_Y)) / 2;
      ids.forEach((id, i) => pos.set(id, { x: l * (W + GAP_X), y: offset + i * (H + GAP_Y), layer: l }));
    });
    return { pos, width: layers.length * (W + GAP_X), height: tallest * (H + GAP_Y), children };
  }

  // Text of the workflow's (ids, names): its invisible controls shown, then cut to fit.
  function clip(text, max) {
    const s = O.visible(text);
    return s.length > max ? s.slice(0, max - 1) + "…" : s;
  }

  // Draw into container; returns handles to change node states and the selection.
  function draw(container, nodes, options) {
    const opts = options || {};
    const { pos, width, height, children } = layout(nodes);
    while (container.firstChild) container.removeChild(container.firstChild);
    const root = svg("svg", { class: "dag", role: "img", "aria-label": "workflow graph" });
    const view = { x: -20, y: -20, w: Math.max(width, 400) + 40, h: Math.max(height, 200) + 40 };
    let mini = null;
    const setView = () => {
      root.setAttribute("viewBox", `${view.x} ${view.y} ${view.w} ${view.h}`);
      if (mini) mini.show(view);
    };
    setView();
    const edges = svg("g", { class: "edges" });
    const boxes = svg("g", { class: "nodes" });
    root.append(edges, boxes);
    for (const n of nodes) {
      const to = pos.get(n.id);
      for (const d of n.deps) {
        const from = pos.get(d);
        if (!from) continue;
        const x1 = from.x + W;
        const y1 = from.y + H / 2;
        const x2 = to.x;
        const y2 = to.y + H / 2;
        const mid = (x1 + x2) / 2;
        edges.append(svg("path", { d: `M${x1},${y1} C${mid},${y1} ${mid},${y2} ${x2},${y2}`, "data-from": d, "data-to": n.id }));
      }
    }
    const groups = new Map();
    for (const n of nodes) {
      const p = pos.get(n.id);
      const g = svg("g", { class: "node n-pending", transform: `translate(${p.x},${p.y})`, tabindex: 0 });
      g.dataset.node = n.id;
      const rect = svg("rect", { width: W, height: H, rx: 6 });
      const title = svg("title", {});
      title.textContent = O.visible(n.id + (n.handler ? ` (${n.handler})` : ""));
      const label = svg("text", { x: 10, y: 17, class: "label" });
      label.textContent = clip(n.label || n.id, 20);
      const sub = svg("text", { x: 10, y: 32, class: "sub" });
      sub.textContent = clip(n.handler || "", 26);
      g.append(title, rect, label, sub);
      g.addEventListener("click", () => opts.onSelect && opts.onSelect(n.id));
      g.addEventListener("keydown", (e) => {
        if (e.key === "Enter" && opts.onSelect) opts.onSelect(n.id);
      });
      boxes.append(g);
      groups.set(n.id, { g, sub, handler: n.handler || "" });
    }
    // The room the graph has, read before 1,000 nodes join the page (no layout of them yet).
    const space = { width: container.clientWidth, height: container.clientHeight };
    container.append(root);
    const full = { ...view };
    // The overview only for a graph larger than its box at its natural size.
    const large = Boolean(space.width && space.height) &&
      Math.min(space.width / full.w, space.height / full.h) < 1;
    mini = minimap(container, nodes, pos, full, large, (x, y) => {
      view.x = x - view.w / 2;
      view.y = y - view.h / 2;
      setView();
    });

    // Zoom around the pointer with the wheel; drag to pan.
    const zoom = (factor, cx, cy) => {
      const px = cx === undefined ? view.x + view.w / 2 : cx;
      const py = cy === undefined ? view.y + view.h / 2 : cy;
      view.x = px - (px - view.x) * factor;
      view.y = py - (py - view.y) * factor;
      view.w *= factor;
      view.h *= factor;
      setView();
    };
    root.addEventListener("wheel", (e) => {
      e.preventDefault();
      const box = root.getBoundingClientRect();
      const cx = view.x + ((e.clientX - box.left) / box.width) * view.w;
      const cy = view.y + ((e.clientY - box.top) / box.height) * view.h;
      zoom(e.deltaY > 0 ? 1.15 : 1 / 1.15, cx, cy);
    }, { passive: false });
    let drag = null;
    root.addEventListener("pointerdown", (e) => {
      drag = { x: e.clientX, y: e.clientY, vx: view.x, vy: view.y };
    });
    window.addEventListener("pointerup", () => (drag = null));
    root.addEventListener("pointermove", (e) => {
      if (!drag) return;
      const box = root.getBoundingClientRect();
      view.x = drag.vx - ((e.clientX - drag.x) / box.width) * view.w;
      view.y = drag.vy - ((e.clientY - drag.y) / box.height) * view.h;
      setView();
    });
    // A large graph opens readable (nodes at three quarters of their size, its roots in view)
    // rather than fitted to a blur: the minimap shows the rest, "Fit" shows it all.
    const readable = (box) => {
      if (!box.width || !box.height) return;
      const scale = Math.min(box.width / full.w, box.height / full.h);
      if (scale >= 0.5) return;
      view.w = box.width / 0.75;
      view.h = box.height / 0.75;
      view.x = full.x;
      view.y = full.y + Math.max(0, (full.h - view.h) / 2);
      setView();
    };
    readable(space);
    let selected = null;
    return {
      count: nodes.length,
      zoomIn: () => zoom(1 / 1.25),
      zoomOut: () => zoom(1.25),
      fit: () => {
        Object.assign(view, full);
        setView();
      },
      state(id, state, note) {
        const item = groups.get(id);
        if (!item) return;
        // Live pages repaint every node often: only what changed touches the page.
        const upper = String(state || "PENDING").toUpperCase();
        const sub = clip(item.text || (note ? `${item.handler} · ${note}` : item.handler), 26);
        if (item.state === upper && item.note === sub) return;
        if (item.state !== upper) {
          item.state = upper;
          mini.state(id, state);
          const cls = `node n-${upper.toLowerCase()}` + (selected === id ? " selected" : "");
          item.g.setAttribute("class", cls);
          item.g.dataset.state = upper;
        }
        item.note = sub;
        item.sub.textContent = sub;
      },
      // A node that stands for more (a child execution, a map's items): a bar filled to
      // `fraction`, `text` in place of the handler, and a link to our own page `href`.
      progress(id, info) {
        const item = groups.get(id);
        if (!item) return;
        if (!info) {
          if (item.bar) item.bar.remove();
          if (item.link) item.link.remove();
          item.bar = item.link = item.text = null;
          item.note = null; // the next state() writes the handler back
          return;
        }
        if (!item.bar) {
          item.bar = svg("rect", { class: "progress", x: 0, y: H - 4, height: 4, rx: 2 });
          item.g.append(item.bar);
        }
        const fraction = Math.max(0, Math.min(1, Number(info.fraction) || 0));
        item.bar.setAttribute("width", String(Math.round(W * fraction)));
        item.text = info.text || null;
        if (item.text) item.sub.textContent = item.note = clip(item.text, 26);
        const href = typeof info.href === "string" && info.href.startsWith("/ui/") ? info.href : null;
        if (href && !item.link) {
          item.link = svg("a", { class: "open", href });
          const arrow = svg("text", { x: W - 8, y: 17, "text-anchor": "end" });
          arrow.textContent = "open ›";
          item.link.append(arrow);
          item.link.addEventListener("click", (e) => e.stopPropagation());
          item.g.append(item.link);
        } else if (href) item.link.setAttribute("href", href);
      },
      select(id) {
        if (selected && groups.get(selected)) groups.get(selected).g.classList.remove("selected");
        selected = id;
        if (groups.get(id)) groups.get(id).g.classList.add("selected");
      },
      children,
    };
  }

  // The overview in the graph's corner (when ``shown``): every node as a dot in its state's colour and the
  // part in view as a frame; a click or a drag on it brings that part into view. Stretched to
  // a fixed box (a 100-layer graph is a long strip), which the frame follows.
  function minimap(container, nodes, pos, full, shown, centreOn) {
    const width = 200;
    const height = Math.round(Math.max(40, Math.min(120, (width * full.h) / full.w)));
    const map = svg("svg", {
      class: "minimap", width, height, viewBox: `${full.x} ${full.y} ${full.w} ${full.h}`,
      preserveAspectRatio: "none", role: "img", "aria-label": "overview of the graph",
    });
    const dots = new Map();
    for (const n of nodes) {
      const p = pos.get(n.id);
      const dot = svg("rect", { x: p.x, y: p.y, width: W, height: H, class: "m-pending" });
      dots.set(n.id, dot);
      map.append(dot);
    }
    const frame = svg("rect", { class: "mini-view", "vector-effect": "non-scaling-stroke" });
    map.append(frame);
    let dragging = false;
    const centre = (e) => {
      const box = map.getBoundingClientRect();
      centreOn(full.x + ((e.clientX - box.left) / box.width) * full.w,
        full.y + ((e.clientY - box.top) / box.height) * full.h);
    };
    map.addEventListener("pointerdown", (e) => {
      e.stopPropagation();
      dragging = true;
      centre(e);
    });
    map.addEventListener("pointermove", (e) => dragging && centre(e));
    window.addEventListener("pointerup", () => (dragging = false));
    if (shown) container.append(map);
    return {
      show(view) {
        frame.setAttribute("x", String(view.x));
        frame.setAttribute("y", String(view.y));
        frame.setAttribute("width", String(view.w));
        frame.setAttribute("height", String(view.h));
      },
      state(id, state) {
        const dot = dots.get(id);
        if (dot) dot.setAttribute("class", `m-${String(state || "pending").toLowerCase()}`);
      },
    };
  }

  // The nodes of a canonical definition: [{id, deps, label, handler}].
  function nodesOf(spec) {
    const list = (spec && spec.dag && spec.dag.nodes) || [];
    return list.map((n) => ({ id: n.id, deps: n.dependencies || [], label: n.name || n.id, handler: n.handler }));
  }

  return { draw, layout, nodesOf };
})();
