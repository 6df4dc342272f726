// The operator page's script (served at /static/operator.js; no inline script, as the page's
// Content-Security-Policy requires).
"use strict";
// The page refreshes when the server says something changed (GET /api/stream), at most once per
// REFRESH_GAP_MS; the Live switch stops and restarts that.
const REFRESH_GAP_MS = 300;
const tokenInput = document.getElementById("token");
tokenInput.value = sessionStorage.getItem("tickfill-admin-token") || "";
tokenInput.addEventListener("input", () => sessionStorage.setItem("tickfill-admin-token", tokenInput.value));

// A token typed in opens a session: an HttpOnly cookie the page's reads then carry. The read-only
// token's page shows no buttons that change anything.
async function openSession() {
  const token = tokenInput.value.trim();
  if (!token) return;
  const r = await fetch("/api/session", {method: "POST", headers: {"Authorization": "Bearer " + token}});
  if (!r.ok) { say("that token is refused"); return; }
  const role = (await r.json()).role;
  document.body.classList.toggle("read-only", role === "read");
  say("signed in: " + role);
  refresh();
  goLive(liveSwitch.checked);
}
tokenInput.addEventListener("change", () => openSession().catch(e => say(e.message)));

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
function session(s) {
  if (!s) return "";
  if (s.state === "valid") return "valid, expires in " + age(s.expires_in_s) + (s.user ? " (" + esc(s.user) + ")" : "");
  if (s.state === "expired") return '<span class="err">expired ' + when(s.at) + ": " + esc(s.reason) + "</span>";
  if (s.state === "missing") return '<span class="err">missing: tickfill kite login --account …</span>';
  return esc(s.state.replace("_", " "));
}
function when(t) { return t ? esc(new Date(t).toLocaleString()) : ""; }
function rows(id, list, render, empty) {
  const body = document.querySelector("#" + id + " tbody");
  const cols = document.querySelectorAll("#" + id + " thead th").length;
  body.innerHTML = list.length ? list.map(render).join("")
    : '<tr><td colspan="' + cols + '" class="muted">' + esc(empty) + "</td></tr>";
}
async function getJson(path) {
  const r = await fetch(path, {cache: "no-store"});
  if (!r.ok) throw new Error(path + " answered " + r.status);
  return r.json();
}
function say(text) { document.getElementById("message").textContent = text; }

async function act(method, path) {
  const token = tokenInput.value.trim();
  const r = await fetch(path, {method, headers: token ? {"Authorization": "Bearer " + token} : {}});
  let body = {};
  try { body = await r.json(); } catch (_) {}
  say(r.ok ? (method + " " + path + ": done") : (body.detail || ("answered " + r.status)));
  await refresh();
}

async function refresh() {
  try {
    const [stats, running, dead, failures, rejected, subs, days, accounts, ready] = await Promise.all([
      getJson("/api/stats"), getJson("/api/running"), getJson("/api/dead"), getJson("/api/failures"),
      getJson("/api/rejected"), getJson("/api/subscriptions"), getJson("/api/days"), getJson("/api/accounts"),
      fetch("/readyz", {cache: "no-store"}).then(r => r.json()),
    ]);
    document.getElementById("paused").innerHTML = ready.paused
      ? '<div class="paused"><b>History requests are paused</b> since ' + when(ready.paused.since) + ": " +
        esc(ready.paused.reason) + '. Renew the session, then <button id="resume" class="mutation">Resume</button></div>'
      : "";
    const resume = document.getElementById("resume");
    if (resume) resume.onclick = () => act("POST", "/api/resume");
    rows("queues", stats, q => "<tr><td>" + esc(q.lane) + '</td><td class="num">' + q.pending +
      '</td><td class="num">' + q.scheduled + '</td><td class="num">' + q.running + '</td><td class="num">' + q.done +
      '</td><td class="num">' + q.dead + "</td><td>" + age(q.oldest_pending_age_s) + "</td></tr>", "no queues");
    rows("accounts", accounts, a => "<tr><td>" + esc(a.account) + (a.default ? ' <span class="muted">default</span>' : "") +
      '</td><td class="num">' + (a.limit || "unlimited") + '</td><td class="num">' + a.grants_last_minute +
      '</td><td class="num">' + a.waiting + "</td><td>" + session(a.session) + "</td><td>" +
      (a.breaker.state === "open" ? '<span class="err">open ' + a.breaker.open_for_s.toFixed(0) + " s more (level " +
        a.breaker.level + ")</span>" : "closed") + "</td></tr>", "no accounts");
    rows("running", running, j => "<tr><td>" + esc(j.id) + "</td><td>" + esc(j.lane) + "</td><td>" + esc(j.kind) +
      "</td><td>" + esc(j.token) + '</td><td class="num">' + j.attempts + "</td><td>" + esc(j.worker) + "</td></tr>",
      "nothing running");
    rows("dead", dead, j => '<tr data-dead-id="' + esc(j.id) + '"><td>' + esc(j.id) + "</td><td>" + esc(j.lane) +
      "</td><td>" + esc(j.kind) + "</td><td>" + esc(j.token) + '</td><td class="num">' + j.attempts + "</td><td>" +
      when(j.failed_at) + '</td><td class="err">' + esc(j.error) + '</td><td class="actions"><button class="mutation" data-retry="' + esc(j.id) +
      '">Retry</button> <button class="mutation" data-forget="' + esc(j.id) + '">Purge</button></td></tr>', "no dead jobs");
    rows("failures", failures, f => "<tr><td>" + when(f.finished_at) + "</td><td>" + esc(f.kind) + "</td><td>" +
      esc(f.token) + "</td><td>" + esc(f.reason) + '</td><td class="num">' + f.attempts + "</td><td>" +
      esc(f.outcome) + '</td><td class="err">' + esc(f.error) + "</td></tr>", "no recent failures");
    rows("rejected", rejected, e => "<tr><td>" + when(e.at) + "</td><td>" + esc(e.code) + "</td><td>" +
      esc(e.reason) + '</td><td class="num">' + esc(e.bytes) + '</td><td class="err">' + esc(e.message) +
      "</td></tr>", "no rejected events");
    const st = days.states || {};
    rows("days", [st], d => "<tr>" + ["open", "complete", "partial", "suspect", "empty", "closed", "final"]
      .map(k => '<td class="num">' + esc(d[k] || 0) + "</td>").join("") + "</tr>", "");
    document.getElementById("suspect-total").textContent = days.suspect_minutes + " suspect minutes";
    rows("subscriptions", subs, s => '<tr><td><button data-days="' + esc(s.instrument_token) + '">' +
      esc(s.instrument_token) + "</button></td><td>" + esc(s.tradingsymbol) +
      "</td><td>" + when(s.subscribed_at) + "</td><td>" + when(s.newest_bar) + "</td><td>" + age(s.newest_bar_age_s) +
      '</td><td class="num">' + s.holes + '</td><td class="num">' + s.missing_minutes + '</td><td class="num">' +
      s.suspect_minutes + "</td><td>" + esc(Object.entries(s.days || {}).map(([k, n]) => n + " " + k).join(", ")) +
      "</td><td>" + esc(s.last_outcome) + "</td></tr>", "no active subscriptions");
    if (shownDays) await showDays(shownDays);
    document.getElementById("updated").textContent = "updated " + new Date().toLocaleTimeString();
  } catch (e) {
    document.getElementById("updated").textContent = "refresh failed: " + e.message;
  }
}

let shownDays = null;
async function showDays(token) {
  shownDays = token;
  const list = await getJson("/api/days/" + encodeURIComponent(token));
  document.getElementById("days-of-title").textContent = "Days of " + token;
  rows("days-of", list, d => "<tr><td>" + esc(d.date) + "</td><td>" + esc(d.state) + '</td><td class="num">' +
    d.trading_minutes + '</td><td class="num">' + d.bars + '</td><td class="num">' + d.covered_minutes +
    '</td><td class="num">' + d.suspect_minutes + '</td><td class="num">' + d.confirmed_empty_minutes +
    '</td><td class="num">' + d.revisions + "</td><td>" + when(d.checked_at) + "</td><td>" +
    esc(d.adjustment === null ? "" : "×" + d.adjustment.toFixed(4)) + "</td></tr>", "no days in the lookback");
}

document.addEventListener("click", ev => {
  const b = ev.target.closest("button");
  if (!b) return;
  if (b.dataset.days) { showDays(b.dataset.days).catch(e => say(e.message)); return; }
  if (b.dataset.retry) act("POST", "/api/dead/" + encodeURIComponent(b.dataset.retry) + "/retry");
  else if (b.dataset.forget) act("DELETE", "/api/dead/" + encodeURIComponent(b.dataset.forget));
  else if (b.id === "retry-all") act("POST", "/api/dead/retry-all");
  else if (b.id === "purge-all" && confirm("Purge every dead job?")) act("POST", "/api/dead/purge?all=true");
});
let stream = null;
let pending = null;
function soon() {
  if (pending) return;
  pending = setTimeout(() => { pending = null; refresh(); }, REFRESH_GAP_MS);
}
function goLive(on) {
  if (stream) { stream.close(); stream = null; }
  if (!on) { document.getElementById("updated").textContent = "paused (Live is off)"; return; }
  // EventSource reconnects by itself (the server also ends each stream after a while); the first
  // event after a reconnect refreshes everything, so a restarted admin server is caught up.
  stream = new EventSource("/api/stream");
  stream.addEventListener("stats", soon);
  stream.onerror = () => { document.getElementById("updated").textContent = "reconnecting…"; };
}
const liveSwitch = document.getElementById("live");
liveSwitch.addEventListener("change", () => goLive(liveSwitch.checked));
if (tokenInput.value) openSession().catch(e => say(e.message));
refresh();
goLive(true);
