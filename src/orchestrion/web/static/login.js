// Sign in: the key goes once, in the Authorization header, to POST /v1/session; the answer
// sets an HttpOnly cookie. The key is never stored by the page.
"use strict";

document.addEventListener("DOMContentLoaded", () => {
  const form = document.getElementById("login-form");
  const error = document.getElementById("login-error");
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    error.textContent = "";
    const input = document.getElementById("api-key");
    const key = input.value.trim();
    const response = await fetch("/v1/session", {
      method: "POST",
      credentials: "same-origin",
      headers: { Authorization: `Bearer ${key}`, Accept: "application/json" },
    });
    input.value = "";
    if (!response.ok) {
      let detail = `sign-in refused (HTTP ${response.status})`;
      try {
        detail = (await response.json()).detail || detail;
      } catch (ignored) {}
      error.textContent = detail;
      return;
    }
    const next = new URLSearchParams(location.search).get("next") || "/ui/";
    // Only a page of the dashboard: never another origin, never a javascript: URL.
    const safe = next.startsWith("/ui/") && !next.startsWith("//") ? next : "/ui/";
    location.assign(safe);
  });
});
