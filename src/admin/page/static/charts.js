// The overview's history charts: the per-minute or per-hour counts GET /api/history keeps, drawn
// with the vendored uPlot (static/vendor). Each chart's element says how many points it drew and
// their total (data-points, data-total), so what it shows can be read without looking.
"use strict";
function tfCharts(container, stepSelect, sinceSelect) {
  const CHARTS = [
    {title: "Jobs", series: [["jobs_done", "done", "#2f7d32"], ["jobs_failed", "failed", "#d08a00"], ["jobs_dead", "dead", "#b3261e"]]},
    {title: "Events", series: [["events_accepted", "accepted", "#1f5fbf"], ["events_rejected", "rejected", "#b3261e"]]},
    {title: "History requests", series: [["history_requests", "requests", "#6a3fb5"], ["throttled", "throttled (429)", "#b3261e"]]},
    {title: "Rows stored", series: [["rows_stored", "rows", "#00796b"]]},
  ];
  // Charts are redrawn at most this often when the page refreshes (a selection redraws at once),
  // and at least this often while the page is live (counts reach the history a second late).
  const MIN_GAP_MS = 5000;
  const MAX_GAP_MS = 10000;
  let drawn = [];
  let lastAt = 0;
  let lastChoice = "";

  function frame(c) {
    const el = document.createElement("figure");
    el.className = "chart";
    el.dataset.chart = c.title;
    const cap = document.createElement("figcaption");
    cap.textContent = c.title;
    el.appendChild(cap);
    container.appendChild(el);
    return el;
  }

  async function update(force) {
    const choice = stepSelect.value + "/" + sinceSelect.value;
    const now = Date.now();
    if (!force && choice === lastChoice && now - lastAt < MIN_GAP_MS) return;
    lastAt = now;
    const data = await Promise.all(CHARTS.map(c => Promise.all(c.series.map(([name]) =>
      tf.getJson("/api/history?series=" + name + "&step=" + stepSelect.value + "&since=" + sinceSelect.value)))));
    if (choice !== lastChoice) {
      drawn.forEach(d => d.plot && d.plot.destroy());
      container.textContent = "";
      drawn = CHARTS.map(c => ({el: frame(c), plot: null}));
      lastChoice = choice;
    }
    CHARTS.forEach((c, i) => {
      const answers = data[i];
      const xs = answers[0].points.map(p => Date.parse(p[0]) / 1000);
      const ys = answers.map(a => a.points.map(p => p[1]));
      const d = drawn[i];
      d.el.dataset.points = String(xs.length);
      d.el.dataset.total = String(ys.reduce((t, s) => t + s.reduce((a, b) => a + b, 0), 0));
      if (typeof uPlot === "undefined") return;
      if (!d.plot) {
        const width = Math.max(280, Math.min(560, container.clientWidth / 2 - 24));
        d.plot = new uPlot({
          width, height: 170, legend: {live: false},
          scales: {x: {time: true}},
          series: [{}].concat(c.series.map(([, label, stroke]) => ({label, stroke, width: 1.5}))),
          axes: [{}, {size: 48}],
        }, [xs].concat(ys), d.el);
      } else {
        d.plot.setData([xs].concat(ys));
      }
    });
  }
  stepSelect.addEventListener("change", () => {
    // An hour's buckets make sense over days, a minute's over hours.
    if (stepSelect.value === "1h" && ["2h", "8h"].includes(sinceSelect.value)) sinceSelect.value = "3d";
    if (stepSelect.value === "1m" && !["2h", "8h"].includes(sinceSelect.value)) sinceSelect.value = "2h";
    update(true).catch(e => tf.say(e.message));
  });
  sinceSelect.addEventListener("change", () => update(true).catch(e => tf.say(e.message)));
  setInterval(() => { if (tf.isLive() && lastChoice) update(false).catch(() => {}); }, MAX_GAP_MS);
  return {update};
}
