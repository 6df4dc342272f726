// What every page of the operator console shares: signing in and out, reading the API, saying
// what happened, and the Live switch (server-sent events from GET /api/stream). No inline script:
// the pages' Content-Security-Policy forbids it.
"use strict";
const tf = (() => {
  // A page refreshes when the server says something changed, at most once per REFRESH_GAP_MS.
  const REFRESH_GAP_MS = 300;
  const body = document.body;

  function esc(v) {
    if (v === null || v === undefined) return "";
    return String(v).replace(/[&<>"']/g, c => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"}[c]));
  }
  function age(s) {
    if (s === null || s === undefined) return "–";
    s = Math.round(s);
    if (s < 120) return s + " s";
    if (s < 7200) return Math.round(s / 60) + " min";
    return (s / 3600).toFixed(1) + " h";
  }
  function when(t) { return t ? esc(new Date(t).toLocaleString()) : ""; }
  function say(text) { document.getElementById("message").textContent = text; }
  function status(text) { document.getElementById("updated").textContent = text; }

  // Fills a table's body; leaves it alone when nothing changed, so nothing on it flickers, loses
  // focus or goes stale under a person's pointer.
  function rows(id, list, render, empty) {
    const tbody = document.querySelector("#" + id + " tbody");
    const cols = document.querySelectorAll("#" + id + " thead th").length;
    const html = list.length ? list.map(render).join("")
      : '<tr><td colspan="' + cols + '" class="muted">' + esc(empty) + "</td></tr>";
    if (tbody.dataset.html !== html) { tbody.innerHTML = html; tbody.dataset.html = html; }
  }
  function setHtml(el, html) { if (el.dataset.html !== html) { el.innerHTML = html; el.dataset.html = html; } }

  // Reads a JSON route; an error carries the server's own words.
  async function getJson(path) {
    const r = await fetch(path, {cache: "no-store"});
    let v = null;
    try { v = await r.json(); } catch (_) {}
    if (!r.ok) {
      if (r.status === 401) throw new Error("sign in to read (this server wants a token)");
      throw new Error((v && v.detail) || (path + " answered " + r.status));
    }
    return v;
  }

  // Sends a change (the session cookie says who). Answers {ok, status, body}.
  async function send(method, path) {
    const r = await fetch(path, {method, cache: "no-store"});
    let v = {};
    try { v = await r.json(); } catch (_) {}
    return {ok: r.ok, status: r.status, body: v};
  }
  // Sends a change and says how it went; then the page refreshes.
  async function act(method, path) {
    const a = await send(method, path);
    say(a.ok ? method + " " + path + ": done" : (a.body.detail || "answered " + a.status));
    refresh();
    return a;
  }

  const signin = document.getElementById("signin");
  if (signin) signin.addEventListener("submit", async ev => {
    ev.preventDefault();
    const input = document.getElementById("token");
    const token = input.value.trim();
    input.value = "";
    if (!token) { say("type a token first"); return; }
    const r = await fetch("/api/session", {method: "POST", headers: {"Authorization": "Bearer " + token}});
    if (!r.ok) { say("that token is refused"); return; }
    location.reload();
  });
  const signout = document.getElementById("signout");
  if (signout) signout.addEventListener("click", async () => {
    await fetch("/api/session", {method: "DELETE"});
    location.reload();
  });

  // The page's own refresh, set by the page's script.
  let refresher = async () => {};
  async function refresh() {
    try {
      await refresher();
      status("updated " + new Date().toLocaleTimeString());
    } catch (e) {
      status("refresh failed: " + e.message);
    }
  }
  let stream = null;
  let pending = null;
  function soon() {
    if (pending) return;
    pending = setTimeout(() => { pending = null; refresh(); }, REFRESH_GAP_MS);
  }
  function goLive(on) {
    if (stream) { stream.close(); stream = null; }
    if (!on) { status("paused (Live is off)"); return; }
    // EventSource reconnects by itself (the server also ends each stream after a while); the
    // first event after a reconnect refreshes everything, so a restarted admin server is caught up.
    stream = new EventSource("/api/stream");
    stream.addEventListener("stats", soon);
    stream.onerror = () => status("reconnecting…");
  }
  const live = document.getElementById("live");
  live.addEventListener("change", () => goLive(live.checked));

  // Starts a page: `fn` reads and draws it, at once and whenever the server says something changed.
  function start(fn) {
    if (body.dataset.readsNeedToken === "true" && body.dataset.role === "none") {
      status("sign in to read: this server wants a token");
      return;
    }
    refresher = fn;
    refresh();
    goLive(live.checked);
  }
  return {esc, age, when, say, rows, setHtml, getJson, send, act, refresh, start,
          isLive: () => live.checked};
})();
