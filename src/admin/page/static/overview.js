// The overview: queues and their controls, kinds of work, sweeps, history charts, accounts,
// running and dead jobs, failures, rejected events, days and subscriptions.
"use strict";
(() => {
  const {esc, age, when, rows, setHtml, getJson, act, say} = tf;

  function pauseText(p) {
    if (!p) return "running";
    return '<span class="err">' + (p.drain ? "draining" : "paused") + "</span> since " + when(p.since) + " by " + esc(p.by);
  }
  function session(s) {
    if (!s) return "";
    if (s.state === "valid") return "valid, expires in " + age(s.expires_in_s) + (s.user ? " (" + esc(s.user) + ")" : "");
    if (s.state === "expired") return '<span class="err">expired ' + when(s.at) + ": " + esc(s.reason) + "</span>";
    if (s.state === "missing") return '<span class="err">missing: tickfill kite login --account …</span>';
    return esc(s.state.replace("_", " "));
  }
  const kinds = (document.getElementById("kinds").dataset.kinds || "").split(",").filter(Boolean);

  async function overview() {
    const [stats, controls, sweeps, running, dead, failures, rejected, subs, days, accounts, ready] = await Promise.all([
      getJson("/api/stats"), getJson("/api/controls"), getJson("/api/sweeps"), getJson("/api/running"),
      getJson("/api/dead"), getJson("/api/failures"), getJson("/api/rejected"), getJson("/api/subscriptions"),
      getJson("/api/days"), getJson("/api/accounts"), fetch("/readyz", {cache: "no-store"}).then(r => r.json()),
    ]);
    setHtml(document.getElementById("paused"), ready.paused
      ? '<div class="paused"><b>History requests are paused</b> since ' + when(ready.paused.since) + ": " +
        esc(ready.paused.reason) + '. Renew the session, then <button id="resume" class="mutation">Resume</button></div>'
      : "");
    rows("queues", stats, q => {
      const p = controls.lanes[q.lane];
      return '<tr data-lane="' + esc(q.lane) + '"><td><a href="/jobs?lane=' + esc(q.lane) + '">' + esc(q.lane) +
        '</a></td><td class="num">' + q.pending + '</td><td class="num">' + q.scheduled + '</td><td class="num">' +
        q.running + '</td><td class="num">' + q.done + '</td><td class="num"><a href="/jobs?state=dead&lane=' +
        esc(q.lane) + '">' + q.dead + "</a></td><td>" + age(q.oldest_pending_age_s) + '</td><td class="state">' +
        pauseText(p) + (p && p.drain ? " (" + controls.running[q.lane] + " still running)" : "") +
        '</td><td class="actions">' + (p
          ? '<button class="mutation" data-control="lanes/' + esc(q.lane) + '/resume">Resume</button>'
          : '<button class="mutation" data-control="lanes/' + esc(q.lane) + '/pause">Pause</button> ' +
            '<button class="mutation" data-control="lanes/' + esc(q.lane) + '/drain">Drain</button>') +
        "</td></tr>";
    }, "no queues");
    rows("kinds", kinds, k => {
      const p = controls.kinds[k];
      return '<tr data-kind="' + esc(k) + '"><td><a href="/jobs?kind=' + esc(k) + '">' + esc(k) + '</a></td><td class="state">' +
        pauseText(p) + '</td><td class="actions"><button class="mutation" data-control="kinds/' + esc(k) + "/" +
        (p ? 'resume">Resume' : 'pause">Pause') + "</button></td></tr>";
    }, "no kinds");
    setHtml(document.getElementById("sweep-plan"), "Schedule: " + esc(sweeps.interval) + "; last tick " + when(sweeps.last_tick) +
      ", next " + when(sweeps.next_tick) + ". " + (sweeps.paused ? "Sweeps are " + pauseText(sweeps.paused) + "." : "Sweeps run."));
    document.getElementById("sweep-pause").hidden = !!sweeps.paused;
    document.getElementById("sweep-resume").hidden = !sweeps.paused;
    rows("sweeps", sweeps.recent, r => "<tr><td>" + when(r.tick) + "</td><td>" + when(r.started_at) + '</td><td class="num">' +
      (r.duration_ms === null ? "" : (r.duration_ms / 1000).toFixed(2) + " s") + '</td><td class="num">' + r.jobs_pushed +
      "</td><td>" + esc(r.outcome) + '</td><td class="err">' + esc(r.error) + "</td></tr>", "no sweeps yet");
    rows("accounts", accounts, a => "<tr><td>" + esc(a.account) + (a.default ? ' <span class="muted">default</span>' : "") +
      '</td><td class="num">' + (a.limit || "unlimited") + '</td><td class="num">' + a.grants_last_minute +
      '</td><td class="num">' + a.waiting + "</td><td>" + session(a.session) + "</td><td>" +
      (a.breaker.state === "open" ? '<span class="err">open ' + a.breaker.open_for_s.toFixed(0) + " s more (level " +
        a.breaker.level + ")</span>" : "closed") + "</td></tr>", "no accounts");
    rows("running", running, j => '<tr><td><a href="/jobs/' + encodeURIComponent(j.id) + '">' + esc(j.id) + "</a></td><td>" +
      esc(j.lane) + "</td><td>" + esc(j.kind) + "</td><td>" + esc(j.token) + '</td><td class="num">' + j.attempts +
      "</td><td>" + esc(j.worker) + "</td></tr>", "nothing running");
    rows("dead", dead, j => '<tr data-dead-id="' + esc(j.id) + '"><td><a href="/jobs/' + encodeURIComponent(j.id) + '">' +
      esc(j.id) + "</a></td><td>" + esc(j.lane) + "</td><td>" + esc(j.kind) + "</td><td>" + esc(j.token) +
      '</td><td class="num">' + j.attempts + "</td><td>" + when(j.failed_at) + '</td><td class="err">' + esc(j.error) +
      '</td><td class="actions"><button class="mutation" data-retry="' + esc(j.id) +
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
      "</td><td>" + esc(s.last_outcome) + '</td><td><a href="/jobs?token=' + esc(s.instrument_token) + '">jobs</a></td></tr>',
      "no active subscriptions");
    if (shownDays) await showDays(shownDays);
    await charts.update();
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
    const d = b.dataset;
    if (d.days) showDays(d.days).catch(e => say(e.message));
    else if (d.control) act("POST", "/api/" + d.control);
    else if (d.retry) act("POST", "/api/dead/" + encodeURIComponent(d.retry) + "/retry");
    else if (d.forget && confirm("Purge dead job " + d.forget + "?")) act("DELETE", "/api/dead/" + encodeURIComponent(d.forget));
    else if (b.id === "retry-all") act("POST", "/api/dead/retry-all");
    else if (b.id === "purge-all" && confirm("Purge every dead job?")) act("POST", "/api/dead/purge?all=true");
    else if (b.id === "resume") act("POST", "/api/resume");
    else if (b.id === "sweep-now") act("POST", "/api/sweeps/now");
    else if (b.id === "sweep-pause") act("POST", "/api/sweeps/pause");
    else if (b.id === "sweep-resume") act("POST", "/api/sweeps/resume");
  });
  const charts = tfCharts(document.getElementById("charts"), document.getElementById("step"), document.getElementById("since"));
  tf.start(overview);
})();
