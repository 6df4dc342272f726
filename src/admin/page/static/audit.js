// The audit: who changed what, how many it matched and acted on, how it went; newest first.
"use strict";
(() => {
  const {esc, when, rows, setHtml, getJson} = tf;
  const before = new URLSearchParams(location.search).get("before");
  const PAGE = 100;

  async function show() {
    const list = await getJson("/api/audit?limit=" + PAGE + (before ? "&before=" + encodeURIComponent(before) : ""));
    rows("audit", list, a => '<tr data-action="' + esc(a.action) + '"' + (a.ok ? "" : ' class="refused"') + '><td class="num">' +
      a.id + "</td><td>" + when(a.at) + "</td><td>" + esc(a.actor) + "</td><td>" + esc(a.action) + "</td><td><code>" +
      esc(JSON.stringify(a.target)) + '</code></td><td class="num">' + esc(a.matched) + '</td><td class="num">' + esc(a.acted) +
      "</td><td>" + (a.ok ? "ok" : '<span class="err">refused</span>') + " " + esc(a.result === null ? "" : JSON.stringify(a.result).slice(0, 300)) +
      "</td></tr>", "no changes recorded");
    setHtml(document.getElementById("paging"), (before ? '<a href="/audit">newest</a> ' : "") +
      (list.length === PAGE ? '<a href="/audit?before=' + list[list.length - 1].id + '">older</a>' : ""));
  }
  tf.start(show);
})();
