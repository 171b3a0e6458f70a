// hmlib report: sortable and searchable tables, figure tabs, current-section highlight in the TOC.
// Plain JavaScript, no library, no network: embedded into the self-contained HTML.
(function () {
  "use strict";

  // ---- tables: click a header to sort; a filter box above tables with many rows ----
  function cellValue(td) {
    var t = (td.textContent || "").trim();
    var s = t.replace(/[\u2009\u202f\s,]/g, "").replace(/^[<>≤≥~]/, "").replace(/\u2212/g, "-").replace(/%$/, "");
    if (s !== "" && s !== "–" && s !== "-" && !isNaN(Number(s))) { return { num: true, v: Number(s) }; }
    return { num: false, v: t.toLowerCase() };
  }

  function sortTable(table, col, th) {
    var body = table.tBodies[0];
    if (!body) { return; }
    var dir = th.getAttribute("aria-sort") === "ascending" ? "descending" : "ascending";
    var heads = table.tHead ? table.tHead.rows[0].cells : [];
    for (var i = 0; i < heads.length; i++) { heads[i].removeAttribute("aria-sort"); }
    th.setAttribute("aria-sort", dir);
    var rows = Array.prototype.slice.call(body.rows);
    var sign = dir === "ascending" ? 1 : -1;
    rows.sort(function (a, b) {
      var x = cellValue(a.cells[col] || a.cells[0]), y = cellValue(b.cells[col] || b.cells[0]);
      if (x.num && y.num) { return sign * (x.v - y.v); }
      if (x.num !== y.num) { return x.num ? -1 : 1; }  // numbers before text (dashes, labels)
      return sign * (x.v < y.v ? -1 : (x.v > y.v ? 1 : 0));
    });
    rows.forEach(function (r) { body.appendChild(r); });
  }

  function addFilter(table) {
    var box = document.createElement("input");
    box.type = "search";
    box.className = "table-filter";
    box.placeholder = "Filter rows…";
    box.setAttribute("aria-label", "Filter the rows of this table");
    box.addEventListener("input", function () {
      var q = box.value.trim().toLowerCase();
      Array.prototype.forEach.call(table.tBodies[0].rows, function (r) {
        r.style.display = (q === "" || r.textContent.toLowerCase().indexOf(q) >= 0) ? "" : "none";
      });
    });
    var host = table.parentNode.classList.contains("table-scroll") ? table.parentNode : table;
    host.parentNode.insertBefore(box, host);
  }

  document.querySelectorAll("table").forEach(function (table) {
    if (!table.tHead || !table.tBodies.length || table.closest("#refs")) { return; }
    table.classList.add("sortable");
    if (!table.parentNode.classList.contains("table-scroll")) {  // wide tables scroll inside the text column
      var wrap = document.createElement("div");
      wrap.className = "table-scroll";
      table.parentNode.insertBefore(wrap, table);
      wrap.appendChild(table);
    }
    var heads = table.tHead.rows[0].cells;
    Array.prototype.forEach.call(heads, function (th, col) {
      th.setAttribute("tabindex", "0");
      th.setAttribute("title", "Sort by this column");
      th.addEventListener("click", function () { sortTable(table, col, th); });
      th.addEventListener("keydown", function (e) { if (e.key === "Enter") { sortTable(table, col, th); } });
    });
    if (table.tBodies[0].rows.length > 8) { addFilter(table); }
  });

  // ---- figure tabs: div.hm-tabs holding one div.hm-tab per panel, labelled by its data-tab attribute ----
  document.querySelectorAll("div.hm-tabs").forEach(function (group, gi) {
    var panels = Array.prototype.filter.call(group.children, function (c) { return c.classList.contains("hm-tab"); });
    if (panels.length < 2) { return; }
    var bar = document.createElement("div");
    bar.className = "hm-tabbar";
    bar.setAttribute("role", "tablist");
    panels.forEach(function (p, i) {
      var b = document.createElement("button");
      b.type = "button";
      b.className = "hm-tabbtn";
      b.setAttribute("role", "tab");
      b.id = "hm-tab-" + gi + "-" + i;
      b.textContent = p.getAttribute("data-tab") || String(i + 1);
      p.setAttribute("role", "tabpanel");
      p.setAttribute("aria-labelledby", b.id);
      b.addEventListener("click", function () { show(i); });
      bar.appendChild(b);
    });
    function show(k) {
      panels.forEach(function (p, i) {
        p.hidden = i !== k;
        bar.children[i].setAttribute("aria-selected", i === k ? "true" : "false");
      });
    }
    group.insertBefore(bar, group.firstChild);
    group.classList.add("hm-tabs-ready");
    show(0);
    // a link to a figure inside a hidden tab opens that tab
    panels.forEach(function (p, i) {
      p.querySelectorAll("[id]").forEach(function (el) { el.setAttribute("data-hm-tab-index", i); });
    });
    function openFor(hash) {
      if (!hash) { return; }
      var el = document.getElementById(decodeURIComponent(hash.slice(1)));
      if (el && group.contains(el)) {
        var k = Number(el.getAttribute("data-hm-tab-index"));
        if (!isNaN(k)) { show(k); }
      }
    }
    window.addEventListener("hashchange", function () { openFor(location.hash); });
    openFor(location.hash);
  });

  // ---- TOC: highlight the section being read ----
  var toc = document.getElementById("TOC");
  if (toc && "IntersectionObserver" in window) {
    var links = {};
    toc.querySelectorAll("a[href^='#']").forEach(function (a) { links[decodeURIComponent(a.getAttribute("href").slice(1))] = a; });
    var obs = new IntersectionObserver(function (entries) {
      entries.forEach(function (en) {
        if (!en.isIntersecting) { return; }
        var a = links[en.target.id];
        if (!a) { return; }
        toc.querySelectorAll("a.active").forEach(function (x) { x.classList.remove("active"); });
        a.classList.add("active");
      });
    }, { rootMargin: "0px 0px -75% 0px" });
    document.querySelectorAll("section[id]").forEach(function (s) { obs.observe(s); });
  }
  document.documentElement.classList.add("hm-js");
})();
