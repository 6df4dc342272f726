// One job: what it is, its run, its payload, and its timeline from the bridge's receipt to the
// committed rows (each attempt's start, waits, put-offs, answers, end).
"use strict";
(() => {
  const {esc, rows, setHtml, getJson} = tf;
  // The timeline's instants to the millisecond, in the browser's zone.
  function at(t) {
    const d = new Date(t);
    return esc(d.toLocaleDateString() + " " + d.toLocaleTimeString([], {hour12: false, fractionalSecondDigits: 3}));
  }
  const id = document.getElementById("job-id").dataset.id;

  function detail(d) {
    if (d === null || d === undefined) return "";
    if (typeof d !== "object") return esc(d);
    return Object.entries(d).map(([k, v]) => esc(k) + ": " + esc(typeof v === "object" ? JSON.stringify(v) : v)).join(", ");
  }
  function pretty(v) { return v === null || v === undefined ? "none" : JSON.stringify(v, null, 2); }

  async function show() {
    let j;
    try {
      j = await getJson("/api/jobs/" + encodeURIComponent(id));
    } catch (e) {
      setHtml(document.getElementById("summary"), "<dt>not found</dt><dd>" + esc(e.message) + "</dd>");
      return;
    }
    const r = j.run || {};
    const facts = [
      ["first id", j.origin], ["lane", j.lane || "not queued"], ["kind", r.kind || (j.payload && j.payload.kind)],
      ["token", r.instrument_token], ["outcome", r.outcome], ["attempts", r.attempts], ["rows", r.rows],
      ["accounts", r.accounts], ["error", r.error], ["note", r.note],
    ].filter(([, v]) => v !== undefined && v !== null && v !== "");
    setHtml(document.getElementById("summary"), facts.map(([k, v]) => "<dt>" + esc(k) + "</dt><dd" +
      (k === "outcome" ? ' id="outcome"' : "") + ">" + esc(v) + "</dd>").join(""));
    const t0 = j.timeline.length ? Date.parse(j.timeline[0].at) : 0;
    rows("timeline", j.timeline, m => '<tr data-what="' + esc(m.what) + '"><td>' + at(m.at) + '</td><td class="num">+' +
      ((Date.parse(m.at) - t0) / 1000).toFixed(3) + " s</td><td>" + esc(m.what) + "</td><td>" + detail(m.detail) + "</td></tr>",
      "nothing recorded for this job");
    document.getElementById("run").textContent = pretty(j.run);
    document.getElementById("payload").textContent = pretty(j.payload);
  }
  tf.start(show);
})();
