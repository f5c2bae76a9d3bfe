// The sweep's architecture gallery (window.HPO_GALLERY, written by hpo/reports/gallery.py): a small
// diagram per trial drawn on a canvas from compact layer data, coloured by objective, filters, the best
// marked, and a comparison of two picked trials. Exposed as window.hpoGallery for tests.
(function () {
  "use strict";
  var data = window.HPO_GALLERY;
  var trials = data.trials, maximize = data.direction === "maximize";
  var grid = document.getElementById("grid"), filters = document.getElementById("filters");
  var comparePanel = document.getElementById("compare"), count = document.getElementById("count");
  var picked = [], filter = {states: {}, objective: [null, null], params: {}};
  var done = trials.filter(function (t) { return t.objective !== null; });
  var values = done.map(function (t) { return t.objective; });
  var lo = Math.min.apply(null, values), hi = Math.max.apply(null, values);
  var best = done.slice().sort(function (a, b) {
    return maximize ? b.objective - a.objective : a.objective - b.objective;
  })[0];

  function esc(text) {
    return String(text).replace(/[&<>"]/g, function (c) {
      return {"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;"}[c];
    });
  }

  function short(v) {
    return typeof v === "number" && !Number.isInteger(v) ? Number(v.toPrecision(3)) : v;
  }

  function score(t) {  // 0 worst .. 1 best among completed trials
    if (t.objective === null) return null;
    var x = hi > lo ? (t.objective - lo) / (hi - lo) : 1;
    return maximize ? x : 1 - x;
  }

  function heat(s) {  // red (worst), yellow, green (best); grey without an objective
    if (s === null) return "#bbbbbb";
    var stops = [[215, 48, 39], [254, 224, 139], [26, 152, 80]], k = s < 0.5 ? 0 : 1, f = s < 0.5 ? s * 2 : s * 2 - 1;
    return "rgb(" + [0, 1, 2].map(function (c) {
      return Math.round(stops[k][c] + (stops[k + 1][c] - stops[k][c]) * f);
    }).join(",") + ")";
  }

  function ranks(arch) {  // longest path from the inputs, as the per-trial diagram lays layers out
    var rank = [], column = [], taken = {};
    arch.layers.forEach(function (_, i) {
      var r = 0;
      arch.edges.forEach(function (e) { if (e[1] === i && e[0] < i) r = Math.max(r, rank[e[0]] + 1); });
      rank.push(r);
      column.push(taken[r] || 0);
      taken[r] = (taken[r] || 0) + 1;
    });
    return {rank: rank, column: column};
  }

  function miniHeight(arch) {
    return Math.min(230, 10 + (Math.max.apply(null, ranks(arch).rank) + 1) * 20);
  }

  function drawMini(canvas, arch, marks) {
    var ctx = canvas.getContext("2d"), at = ranks(arch);
    var rows = Math.max.apply(null, at.rank) + 1, cols = Math.max.apply(null, at.column) + 1;
    var h = Math.min(22, (canvas.height - 8) / rows), w = Math.min(130, (canvas.width - 24) / cols - 6);
    var box = function (i) { return [6 + at.column[i] * (w + 6), 4 + at.rank[i] * h, w, h * 0.72]; };
    ctx.clearRect(0, 0, canvas.width, canvas.height);
    ctx.lineWidth = 1;
    arch.edges.forEach(function (e) {
      var a = box(e[0]), b = box(e[1]);
      ctx.strokeStyle = e[2] ? "#444" : "#999";
      ctx.setLineDash(e[2] ? [] : [3, 2]);
      ctx.beginPath();
      if (at.rank[e[1]] - at.rank[e[0]] === 1) {
        ctx.moveTo(a[0] + a[2] / 2, a[1] + a[3]); ctx.lineTo(b[0] + b[2] / 2, b[1]);
      } else {
        var x = 6 + cols * (w + 6);
        ctx.moveTo(a[0] + a[2], a[1] + a[3] / 2);
        ctx.quadraticCurveTo(x + 8, (a[1] + b[1]) / 2, b[0] + b[2], b[1] + b[3] / 2);
      }
      ctx.stroke();
    });
    ctx.setLineDash([]);
    ctx.font = Math.max(7, Math.min(10, h * 0.5)) + "px Helvetica, Arial, sans-serif";
    ctx.textBaseline = "middle";
    arch.layers.forEach(function (layer, i) {
      var r = box(i), mark = marks && marks[layer[0]];
      ctx.fillStyle = layer[5];
      ctx.fillRect(r[0], r[1], r[2], r[3]);
      ctx.strokeStyle = mark ? "#d62728" : "#333";
      ctx.lineWidth = mark ? 2 : 0.6;
      ctx.strokeRect(r[0], r[1], r[2], r[3]);
      ctx.fillStyle = "#000";
      ctx.fillText(i + " " + layer[0] + "  " + layer[2], r[0] + 3, r[1] + r[3] / 2, r[2] - 5);
    });
  }

  function visible(t) {
    if (!filter.states[t.state]) return false;
    var o = filter.objective;
    if ((o[0] !== null || o[1] !== null) && t.objective === null) return false;
    if (o[0] !== null && t.objective < o[0]) return false;
    if (o[1] !== null && t.objective > o[1]) return false;
    return Object.keys(filter.params).every(function (name) {
      var f = filter.params[name], v = t.params[name];
      if (f.choices) return f.choices[String(v)] !== false;
      return (f.min === null || Number(v) >= f.min) && (f.max === null || Number(v) <= f.max);
    });
  }

  function card(t) {
    var div = document.createElement("div"), s = score(t);
    div.className = "card" + (t === best ? " best" : "");
    div.dataset.number = t.number;
    div.style.borderColor = heat(s);
    var params = Object.keys(t.params).map(function (k) { return esc(k) + "=" + esc(short(t.params[k])); }).join(", ");
    div.innerHTML = '<div class="head" style="background:' + heat(s) + '"><b>#' + t.number + "</b> " +
      (t === best ? "\u2605 best " : "") + (t.objective === null ? esc(t.state) : esc(data.objective) + " " +
      t.objective.toPrecision(4)) + '<label><input type="checkbox" class="pick"> compare</label></div>' +
      (t.architecture ? '<canvas width="230" height="' + miniHeight(t.architecture) + '"></canvas>' : '<div class="none">no architecture logged</div>') +
      '<div class="params">' + params + "</div>";
    if (t.architecture) drawMini(div.querySelector("canvas"), t.architecture);
    div.querySelector(".pick").addEventListener("change", function (ev) { pick(t.number, ev.target.checked); });
    return div;
  }

  function render() {
    grid.innerHTML = "";
    var shown = trials.filter(visible);
    shown.forEach(function (t) { grid.appendChild(card(t)); });
    count.textContent = shown.length + " of " + trials.length + " trials";
    picked = picked.filter(function (n) { return shown.some(function (t) { return t.number === n; }); });
    grid.querySelectorAll(".card").forEach(function (c) {
      c.querySelector(".pick").checked = picked.indexOf(Number(c.dataset.number)) >= 0;
    });
    showCompare();
  }

  function diff(a, b) {  // rows aligned by layer name: same, changed (shape or params), added, removed
    var la = a.architecture ? a.architecture.layers : [], lb = b.architecture ? b.architecture.layers : [];
    var inB = {}, rows = [], j = 0;
    lb.forEach(function (l) { inB[l[0]] = l; });
    var inA = {};
    la.forEach(function (l) { inA[l[0]] = l; });
    la.forEach(function (l) {
      while (j < lb.length && !inA[lb[j][0]]) { rows.push({name: lb[j][0], a: null, b: lb[j], status: "added"}); j++; }
      if (j < lb.length && lb[j][0] === l[0]) j++;
      var other = inB[l[0]];
      var status = !other ? "removed" : other[1] !== l[1] || other[2] !== l[2] || other[3] !== l[3] ? "changed" : "same";
      rows.push({name: l[0], a: l, b: other || null, status: status});
    });
    for (; j < lb.length; j++) if (!inA[lb[j][0]]) rows.push({name: lb[j][0], a: null, b: lb[j], status: "added"});
    return rows;
  }

  function cell(l) {
    return l ? esc(l[4]) + " \u00b7 " + esc(l[2]) + " \u00b7 " + l[3].toLocaleString("en") + " params" : "\u2014";
  }

  function byNumber(n) { return trials.filter(function (t) { return t.number === n; })[0]; }

  function showCompare() {
    if (picked.length !== 2) {
      comparePanel.innerHTML = '<p class="hint">Tick "compare" on two trials to see their differences.</p>';
      return;
    }
    var a = byNumber(picked[0]), b = byNumber(picked[1]), rows = diff(a, b);
    var marksA = {}, marksB = {};
    rows.forEach(function (r) { if (r.status !== "same") { marksA[r.name] = marksB[r.name] = true; } });
    var keys = Object.keys(a.params).concat(Object.keys(b.params)).filter(function (k, i, all) {
      return all.indexOf(k) === i && String(a.params[k]) !== String(b.params[k]);
    });
    comparePanel.innerHTML = "<h3>#" + a.number + " vs #" + b.number + "</h3>" +
      '<div class="pair"><canvas width="260" height="260"></canvas><canvas width="260" height="260"></canvas></div>' +
      "<table><tr><th>layer</th><th>#" + a.number + "</th><th>#" + b.number + "</th><th></th></tr>" +
      rows.map(function (r) {
        return '<tr class="' + r.status + '"><td>' + esc(r.name) + "</td><td>" + cell(r.a) + "</td><td>" +
          cell(r.b) + "</td><td>" + (r.status === "same" ? "" : r.status) + "</td></tr>";
      }).join("") + "</table><p>Parameters that differ: " +
      (keys.map(function (k) { return esc(k) + " " + esc(a.params[k]) + " \u2192 " + esc(b.params[k]); })
        .join(", ") || "none") + "</p>";
    var canvases = comparePanel.querySelectorAll("canvas");
    if (a.architecture) drawMini(canvases[0], a.architecture, marksA);
    if (b.architecture) drawMini(canvases[1], b.architecture, marksB);
  }

  function pick(number, on) {
    picked = picked.filter(function (n) { return n !== number; });
    if (on) picked.push(number);
    if (picked.length > 2) picked.shift();
    grid.querySelectorAll(".card").forEach(function (c) {
      c.querySelector(".pick").checked = picked.indexOf(Number(c.dataset.number)) >= 0;
    });
    showCompare();
  }

  function number(input) { return input.value === "" ? null : Number(input.value); }

  function buildFilters() {
    var html = "<b>State</b> ";
    var states = trials.map(function (t) { return t.state; }).filter(function (s, i, all) { return all.indexOf(s) === i; });
    states.forEach(function (s) {
      filter.states[s] = true;
      html += '<label><input type="checkbox" data-state="' + esc(s) + '" checked> ' + esc(s) + "</label> ";
    });
    html += '<span class="group"><b>' + esc(data.objective) + '</b> <input type="number" step="any" id="omin" ' +
      'placeholder="min"> to <input type="number" step="any" id="omax" placeholder="max"></span>';
    data.params.forEach(function (name) {
      var seen = trials.map(function (t) { return t.params[name]; }).filter(function (v) { return v !== undefined; });
      var numeric = seen.every(function (v) { return typeof v === "number"; });
      html += '<span class="group" data-param="' + esc(name) + '"><b>' + esc(name) + "</b> ";
      if (numeric) {
        filter.params[name] = {min: null, max: null};
        html += '<input type="number" step="any" class="pmin" placeholder="' + Math.min.apply(null, seen) +
          '"> to <input type="number" step="any" class="pmax" placeholder="' + Math.max.apply(null, seen) + '">';
      } else {
        filter.params[name] = {choices: {}};
        seen.map(String).filter(function (v, i, all) { return all.indexOf(v) === i; }).forEach(function (v) {
          html += '<label><input type="checkbox" class="choice" value="' + esc(v) + '" checked> ' + esc(v) + "</label> ";
        });
      }
      html += "</span>";
    });
    filters.innerHTML = html;
    filters.addEventListener("input", readFilters);
    filters.addEventListener("change", readFilters);
  }

  function readFilters() {
    filters.querySelectorAll("[data-state]").forEach(function (box) { filter.states[box.dataset.state] = box.checked; });
    filter.objective = [number(document.getElementById("omin")), number(document.getElementById("omax"))];
    filters.querySelectorAll("[data-param]").forEach(function (group) {
      var f = filter.params[group.dataset.param];
      if (f.choices) group.querySelectorAll(".choice").forEach(function (box) { f.choices[box.value] = box.checked; });
      else { f.min = number(group.querySelector(".pmin")); f.max = number(group.querySelector(".pmax")); }
    });
    render();
  }

  buildFilters();
  render();
  window.hpoGallery = {
    trials: trials,
    best: best ? best.number : null,
    shown: function () {
      return Array.prototype.map.call(grid.querySelectorAll(".card"), function (c) { return Number(c.dataset.number); });
    },
    pick: pick,
    diff: function (a, b) { return diff(byNumber(a), byNumber(b)); }
  };
})();
