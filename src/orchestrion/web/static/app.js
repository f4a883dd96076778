// Orchestrion dashboard: what every page shares. Everything here talks to the public REST
// API, signed in by the session cookie; every value from the server is put into the page as
// text (textContent, attribute values), never as markup, and no server value becomes a URL
// except through O.link, which only builds /ui/ paths of our own. Text from a workflow shows
// its invisible controls (bidirectional overrides and isolates, C0/C1 control characters) as
// visible markers, and values set in running text sit in <bdi> elements (O.text), so no name
// or version can reorder the line around it.
"use strict";

const O = (() => {
  const RANK = new Map([["viewer", 0], ["operator", 1], ["admin", 2]]);
  let csrf = null;
  let me = null;
  const ready = [];

  class ApiError extends Error {
    constructor(status, problem, retryAfter) {
      super((problem && problem.detail) || `HTTP ${status}`);
      this.status = status;
      this.problem = problem || {};
      this.retryAfter = retryAfter || 0; // seconds, from a 429's or a 503's Retry-After
    }
  }

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (name === "class") node.className = value;
      else if (name === "text") node.textContent = visible(value);
      else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
      else if (name === "href") node.setAttribute("href", safeHref(value));
      else node.setAttribute(name, value === true ? "" : String(value));
    }
    append(node, children);
    return node;
  }

  function append(node, children) {
    for (const child of children.flat()) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(visible(child)));
    }
    return node;
  }

  // Characters that change how text around them is ordered or are not meant to be seen:
  // shown as "[U+202E]" rather than obeyed. Tab, line feed and carriage return stay.
  const HIDDEN = /[\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f-\u009f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g;
  const marker = (c) => `[U+${c.codePointAt(0).toString(16).toUpperCase().padStart(4, "0")}]`;
  function visible(value) {
    return String(value).replace(HIDDEN, marker);
  }

  // A value inside running text ("name v1 · created ..."): isolated from its neighbours.
  function text(value) {
    return el("bdi", {}, value === null || value === undefined ? "" : String(value));
  }

  // Only our own pages are ever linked: a value such as "javascript:..." is never a URL.
  function safeHref(value) {
    const text = String(value);
    return text.startsWith("/ui/") && !text.startsWith("//") ? text : "#";
  }

  function link(kind, id, label) {
    const path = kind === "definition" ? "/ui/definitions/" : "/ui/executions/";
    return el("a", { href: path + encodeURIComponent(id) }, text(label === undefined ? id : label));
  }

  function clear(node) {
    while (node.firstChild) node.removeChild(node.firstChild);
    return node;
  }

  function $(id) {
    return document.getElementById(id);
  }

  async function api(method, path, body, options) {
    const opts = options || {};
    const headers = { Accept: "application/json" };
    const init = { method, headers, credentials: "same-origin", cache: "no-store" };
    if (body !== undefined && body !== null) {
      if (typeof body === "string") {
        headers["Content-Type"] = opts.contentType || "application/yaml";
        init.body = body;
      } else {
        headers["Content-Type"] = "application/json";
        init.body = JSON.stringify(body);
      }
    }
    if (method !== "GET") {
      if (csrf) headers["X-CSRF-Token"] = csrf;
      // Headers the deployment requires on every change: the dashboard names itself in them.
      for (const name of (me && me.required_headers) || []) headers[name] = "orchestrion-dashboard";
    }
    const response = await fetch(path, init);
    if (response.status === 401 && !opts.quiet401) {
      toLogin();
      throw new ApiError(401, { detail: "signed out" });
    }
    if (response.status === 204) return null;
    let data = null;
    const type = response.headers.get("content-type") || "";
    if (type.includes("json")) data = await response.json();
    if (!response.ok) {
      throw new ApiError(response.status, data, Number(response.headers.get("retry-after")));
    }
    return data;
  }

  function toLogin() {
    if (document.body.dataset.view === "login") return;
    const next = location.pathname + location.search;
    location.assign("/ui/login?next=" + encodeURIComponent(next));
  }

  function can(role) {
    if (!me) return false;
    if (me.open) return true;
    return (RANK.get(me.role) ?? -1) >= RANK.get(role);
  }

  async function start() {
    try {
      me = await api("GET", "/v1/session");
    } catch (error) {
      if (error instanceof ApiError && error.status === 401) return; // toLogin did it
      // Busy (429, 503), restarting or out of reach: say so on the page and ask again, rather
      // than leave a page that shows nothing and never fills.
      const wait = Math.min(Math.max(Math.ceil(error.retryAfter || 0), 2), 30);
      $("who").textContent = `not connected (${error.message}): trying again in ${wait} s`;
      setTimeout(start, wait * 1000);
      return;
    }
    csrf = me.csrf_token;
    document.body.dataset.role = me.open ? "admin" : me.role;
    const who = $("who");
    if (me.open) who.textContent = "open API (no keys configured)";
    else append(clear(who), [text(me.name || me.key_id), ` · ${me.role}`]);
    const logout = $("logout");
    if (me.via === "session") {
      logout.hidden = false;
      logout.addEventListener("click", signOut);
    }
    for (const a of document.querySelectorAll("[data-nav]")) {
      if (a.dataset.nav === document.body.dataset.view) a.classList.add("current");
    }
    for (const callback of ready) {
      try {
        await callback(me);
      } catch (error) {
        report(error);
      }
    }
  }

  async function signOut() {
    try {
      await api("DELETE", "/v1/session");
    } finally {
      location.assign("/ui/login");
    }
  }

  function onReady(callback) {
    ready.push(callback);
  }

  function toast(message, kind) {
    const box = el("div", { class: `toast ${kind || "info"}`, role: "status" }, message);
    $("toasts").append(box);
    setTimeout(() => box.remove(), kind === "error" ? 8000 : 4000);
  }

  function report(error) {
    const problem = error && error.problem;
    let text = error && error.message ? error.message : String(error);
    if (problem && Array.isArray(problem.errors) && problem.errors.length) {
      text += " — " + problem.errors.map((e) => e.message).join("; ");
    }
    toast(text, "error");
  }

  function time(value) {
    if (!value) return "";
    const date = new Date(value);
    return isNaN(date) ? String(value) : date.toLocaleString();
  }

  function duration(ms) {
    if (ms === null || ms === undefined || isNaN(ms)) return "";
    if (ms < 1000) return `${Math.round(ms)} ms`;
    const s = ms / 1000;
    if (s < 60) return `${s.toFixed(s < 10 ? 2 : 1)} s`;
    const m = Math.floor(s / 60);
    if (m < 60) return `${m} min ${Math.round(s % 60)} s`;
    return `${Math.floor(m / 60)} h ${m % 60} min`;
  }

  function span(start, end) {
    if (!start) return null;
    const a = Date.parse(start);
    const b = end ? Date.parse(end) : Date.now();
    return b - a;
  }

  function pretty(value) {
    if (value === undefined) return "";
    try {
      return visible(JSON.stringify(value, null, 2));
    } catch (error) {
      return visible(value);
    }
  }

  function badge(status) {
    const text = String(status || "").toUpperCase();
    return el("span", { class: `badge s-${text.toLowerCase()}` }, text);
  }

  // An event stream that reconnects after the server ends it, from the last event seen.
  function stream(path, onEvent, onState) {
    let source = null;
    let closed = false;
    let last = null;
    let delay = 1000;
    function open() {
      const url = last === null ? path : withParam(path, "after", last);
      const opened = openSource(url);
      source = opened;
      opened.onopen = () => {
        delay = 1000;
        onState && onState("live");
      };
      opened.onerror = () => {
        onState && onState("reconnecting");
        // The browser reconnects by itself after a dropped connection, but gives up for good
        // after an answer that is not a stream (429 over the caller's stream limit, 503 over
        // the server's, or while it restarts): open it again later, from the last event seen.
        if (opened.readyState !== NativeEventSource.CLOSED || closed) return;
        sources.delete(opened);
        setTimeout(() => {
          if (!closed && source === opened) open();
        }, delay);
        delay = Math.min(delay * 2, 30000);
      };
      const handler = (message) => {
        if (message.lastEventId) last = message.lastEventId;
        try {
          onEvent(JSON.parse(message.data));
        } catch (error) {
          console.error(error);
        }
      };
      opened.onmessage = handler;
      for (const type of STREAM_TYPES) opened.addEventListener(type, handler);
    }
    open();
    return {
      close() {
        closed = true;
        if (source) source.close();
      },
      get closed() {
        return closed;
      },
    };
  }

  const STREAM_TYPES = [
    "execution.started", "execution.running", "execution.completed", "execution.failed",
    "execution.cancelled", "execution.paused", "execution.resumed", "execution.waiting",
    "execution.retried", "execution.recovered", "execution.compensating", "execution.cancel_requested",
    "execution.pause_requested",
    "execution.criteria_evaluated", "node.queued", "node.started", "node.completed",
    "node.failed", "node.skipped", "node.waiting", "node.woken", "node.retry_scheduled",
    "node.cancelled", "node.compensated", "node.compensation_failed",
    "node.compensation_reset", "node.reset", "control.requested",
  ];

  function withParam(path, name, value) {
    const url = new URL(path, location.origin);
    url.searchParams.set(name, value);
    return url.pathname + url.search;
  }

  function button(label, onClick, attrs) {
    return el("button", Object.assign({ type: "button", onclick: onClick }, attrs || {}), label);
  }

  // Every event stream of the page, closed when the page is left: a browser otherwise may
  // keep their connections (a kept page, a socket still counted), and with six per server a
  // later page waits for one.
  const sources = new Set();
  const NativeEventSource = window.EventSource;
  function openSource(url) {
    const source = new NativeEventSource(url, { withCredentials: true });
    sources.add(source);
    return source;
  }
  window.addEventListener("pagehide", () => {
    for (const source of sources) source.close();
    sources.clear();
  });

  document.addEventListener("DOMContentLoaded", start);

  return {
    ApiError, api, append, badge, button, can, clear, duration, el, link, onReady, pretty,
    openSource, report, span, stream, text, time, toast, visible, $, get me() { return me; },
  };
})();
