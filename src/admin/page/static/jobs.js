// The job explorer: the filter lives in the page's address (so it can be shared and reloaded),
// the list shows how many jobs match and pages through them, and the bulk buttons act on every
// job the filter matches after a dry run has said how many that is and the person has agreed.
"use strict";
(() => {
  const {esc, when, rows, setHtml, getJson, send, say} = tf;
  const FILTER = ["token", "symbol", "kind", "lane", "state", "error", "from", "to", "min_attempts"];
  const here = new URLSearchParams(location.search);

  // The filter the address holds (empty values are no filter), as a query string.
  function filterQuery() {
    const q = new URLSearchParams();
    for (const name of FILTER) {
      const v = (here.get(name) || "").trim();
      if (v) q.set(name, v);
    }
    return q;
  }

  document.getElementById("filter").addEventListener("submit", ev => {
    ev.preventDefault();
    const q = new URLSearchParams();
    for (const el of ev.target.elements) {
      if (el.name && el.value.trim()) q.set(el.name, el.value.trim());
    }
    const s = q.toString();
    location.assign("/jobs" + (s ? "?" + s : ""));
  });

  function outcome(j) {
    if (j.error) return '<span class="err">' + esc(j.error) + "</span>";
    return esc(j.outcome || (j.worker ? "on " + j.worker : ""));
  }

  async function list() {
    const q = filterQuery();
    const cursor = here.get("cursor");
    const api = new URLSearchParams(q);
    if (cursor) api.set("cursor", cursor);
    let page;
    try {
      page = await getJson("/api/jobs" + (api.toString() ? "?" + api : ""));
    } catch (e) {
      const m = document.getElementById("matched");
      m.textContent = e.message;
      m.dataset.matched = "";
      rows("jobs", [], () => "", "no answer");
      return;
    }
    const m = document.getElementById("matched");
    m.textContent = page.matched + (page.matched === 1 ? " job matches" : " jobs match");
    m.dataset.matched = String(page.matched);
    rows("jobs", page.jobs, j => '<tr data-job-id="' + esc(j.id) + '" data-state="' + esc(j.state) + '"><td><a href="/jobs/' +
      encodeURIComponent(j.id) + '">' + esc(j.id) + "</a></td><td>" + esc(j.state) + "</td><td>" + esc(j.lane) +
      "</td><td>" + esc(j.kind) + '</td><td><a href="/jobs?token=' + esc(j.token) + '">' + esc(j.token) +
      '</a></td><td class="num">' + j.attempts + "</td><td>" + when(j.at) + "</td><td>" + outcome(j) + "</td></tr>",
      "no job matches");
    const s = q.toString();
    let paging = "";
    if (cursor) paging += '<a href="/jobs' + (s ? "?" + esc(s) : "") + '">first page</a> ';
    if (page.next) {
      const n = new URLSearchParams(q);
      n.set("cursor", page.next);
      paging += '<a id="next" href="/jobs?' + esc(n.toString()) + '">next page</a>';
    }
    setHtml(document.getElementById("paging"), paging);
  }

  const VERB = {retry: "Retry", cancel: "Cancel", purge: "Purge"};
  async function bulk(action) {
    const q = filterQuery();
    const every = q.toString() === "";
    if (every) q.set("all", "true");
    const dry = new URLSearchParams(q);
    dry.set("dry_run", "true");
    const d = await send("POST", "/api/jobs/" + action + "?" + dry);
    if (!d.ok) { say(d.body.detail || action + " answered " + d.status); return; }
    const n = d.body.would_act;
    if (!n) { say("no matching job can be " + (action === "retry" ? "retried" : action + "ed") + ": nothing done"); return; }
    let text = VERB[action] + " " + n + " matching job" + (n === 1 ? "" : "s") + "?";
    if (d.body.remaining > 0) text += " (" + d.body.matched + " match; at most " + d.body.cap + " at once, the oldest first.)";
    if (every) text += " The filter is empty: this is every such job.";
    if (!confirm(text)) { say(VERB[action] + ": not done"); return; }
    q.set("cap", String(n));
    const a = await send("POST", "/api/jobs/" + action + "?" + q);
    if (!a.ok) { say(a.body.detail || action + " answered " + a.status); return; }
    const failed = a.body.failed || [];
    say(VERB[action] + ": " + a.body.acted + " done" + (failed.length ? ", " + failed.length + " failed" : "") +
      (a.body.taken_by_others ? ", " + a.body.taken_by_others + " taken by others first" : "") +
      (a.body.remaining ? ", " + a.body.remaining + " more match" : ""));
    setHtml(document.getElementById("report"), failed.length
      ? "<h3>Not done</h3><ul>" + failed.map(f => "<li>" + esc(f.id) + ": " + esc(f.error) + "</li>").join("") + "</ul>" : "");
    tf.refresh();
  }
  document.addEventListener("click", ev => {
    const b = ev.target.closest("button[data-bulk]");
    if (b) bulk(b.dataset.bulk).catch(e => say(e.message));
  });
  tf.start(list);
})();
