// The interactive view of one architecture (window.HPO_SCENE, written by worker/architecture/view.py):
// a canvas renderer with no library. 3D: perspective boxes drawn far to near (painter's algorithm), drag
// to orbit, wheel to zoom. 2D: the numbered diagram, drag to pan, wheel to zoom. Hover or click a block
// for its details. The scene is exposed as window.hpoScene for tests.
(function () {
  "use strict";
  var data = window.HPO_SCENE;
  var canvas = document.getElementById("view");
  var ctx = canvas.getContext("2d");
  var details = document.getElementById("details");
  var toggle = document.getElementById("mode");
  var blocks = data.blocks, edges = data.edges;
  var FACES = [[0, 1, 3, 2], [4, 6, 7, 5], [0, 4, 5, 1], [2, 3, 7, 6], [0, 2, 6, 4], [1, 5, 7, 3]];
  var BOX_W = 200, BOX_H = 62, GAP_X = 30, GAP_Y = 28;
  var lo = [Infinity, Infinity, Infinity], hi = [-Infinity, -Infinity, -Infinity];
  blocks.forEach(function (b) {
    for (var k = 0; k < 3; k++) {
      lo[k] = Math.min(lo[k], b.centre[k] - b.size[k] / 2);
      hi[k] = Math.max(hi[k], b.centre[k] + b.size[k] / 2);
    }
  });
  var centre = [0, 1, 2].map(function (k) { return (lo[k] + hi[k]) / 2; });
  var radius = Math.max(1, Math.hypot(hi[0] - lo[0], hi[1] - lo[1], hi[2] - lo[2]) / 2);
  var view = {mode: "3d", yaw: 1.15, pitch: 0.3, dist: radius * 1.8, zoom: 1, panX: 0, panY: 0};
  var ranks = 1 + Math.max.apply(null, blocks.map(function (b) { return b.rank; }).concat([0]));
  var hover = -1, pinned = -1, hits = [];

  function resize() {
    var ratio = window.devicePixelRatio || 1;
    canvas.width = canvas.clientWidth * ratio;
    canvas.height = canvas.clientHeight * ratio;
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    draw();
  }

  function toCamera(p) {
    var x = p[0] - centre[0], y = p[1] - centre[1], z = p[2] - centre[2];
    var cy = Math.cos(view.yaw), sy = Math.sin(view.yaw), cp = Math.cos(view.pitch), sp = Math.sin(view.pitch);
    var x1 = cy * x + sy * z, z1 = -sy * x + cy * z;
    return [x1, cp * y - sp * z1, sp * y + cp * z1 + view.dist];
  }

  function toScreen(c) {
    var f = Math.min(canvas.clientWidth, canvas.clientHeight) * 0.9 / Math.max(c[2], 0.05);
    return [canvas.clientWidth / 2 + c[0] * f, canvas.clientHeight / 2 - c[1] * f];
  }

  function shade(hex, light) {
    var n = parseInt(hex.slice(1), 16), out = [16, 8, 0].map(function (s) {
      return Math.round(((n >> s) & 255) * light);
    });
    return "rgb(" + out.join(",") + ")";
  }

  function arrow(a, b, colour, dashed) {
    ctx.strokeStyle = ctx.fillStyle = colour;
    ctx.setLineDash(dashed ? [5, 4] : []);
    ctx.beginPath();
    ctx.moveTo(a[0], a[1]);
    if (a.length > 2) ctx.quadraticCurveTo(a[2], a[3], b[0], b[1]); else ctx.lineTo(b[0], b[1]);
    ctx.stroke();
    ctx.setLineDash([]);
    var from = a.length > 2 ? [a[2], a[3]] : a, d = Math.hypot(b[0] - from[0], b[1] - from[1]) || 1;
    var ux = (b[0] - from[0]) / d, uy = (b[1] - from[1]) / d;
    ctx.beginPath();
    ctx.moveTo(b[0], b[1]);
    ctx.lineTo(b[0] - 9 * ux - 4 * uy, b[1] - 9 * uy + 4 * ux);
    ctx.lineTo(b[0] - 9 * ux + 4 * uy, b[1] - 9 * uy - 4 * ux);
    ctx.fill();
  }

  function draw3d() {
    var faces = [];
    blocks.forEach(function (b, i) {
      var cam = [];
      for (var n = 0; n < 8; n++) {
        cam.push(toCamera([0, 1, 2].map(function (k) {
          return b.centre[k] + ((n >> k) & 1 ? 0.5 : -0.5) * b.size[k];
        })));
      }
      FACES.forEach(function (f) {
        var p = f.map(function (n) { return cam[n]; });
        var u = [0, 1, 2].map(function (k) { return p[1][k] - p[0][k]; });
        var v = [0, 1, 2].map(function (k) { return p[3][k] - p[0][k]; });
        var nx = u[1] * v[2] - u[2] * v[1], ny = u[2] * v[0] - u[0] * v[2], nz = u[0] * v[1] - u[1] * v[0];
        var facing = nx * p[0][0] + ny * p[0][1] + nz * p[0][2];
        var len = Math.hypot(nx, ny, nz) || 1;
        faces.push({block: i, front: facing < 0, light: 0.55 + 0.45 * Math.abs(nz / len),
          depth: (p[0][2] + p[1][2] + p[2][2] + p[3][2]) / 4, points: p.map(toScreen)});
      });
    });
    faces = faces.filter(function (f) { return f.front; });
    faces.sort(function (a, b) { return b.depth - a.depth; });
    faces.forEach(function (f) {
      var b = blocks[f.block], lit = f.block === hover || f.block === pinned;
      ctx.beginPath();
      f.points.forEach(function (q, n) { if (n) ctx.lineTo(q[0], q[1]); else ctx.moveTo(q[0], q[1]); });
      ctx.closePath();
      ctx.fillStyle = shade(b.colour, f.light);
      ctx.fill();
      ctx.strokeStyle = lit ? "#d62728" : "#333";
      ctx.lineWidth = lit ? 2 : 0.7;
      ctx.stroke();
      ctx.lineWidth = 1;
    });
    hits = faces.slice().reverse().map(function (f) { return {block: f.block, polygon: f.points}; });
    edges.forEach(function (e) {
      var s = blocks[e.from], t = blocks[e.to];
      var a = toScreen(toCamera([s.centre[0], s.centre[1], s.centre[2] + s.size[2] / 2]));
      var b = toScreen(toCamera([t.centre[0], t.centre[1], t.centre[2] - t.size[2] / 2]));
      if (e.skip) {
        var side = Math.max(s.size[0], t.size[0]) / 2 + 0.8;
        var mid = toScreen(toCamera([(s.centre[0] + t.centre[0]) / 2 + side, s.centre[1] + side / 2,
          (s.centre[2] + t.centre[2]) / 2]));
        a = a.concat(mid);
      }
      arrow(a, b, e.direct ? "#222" : "#888", !e.direct);
    });
    ctx.fillStyle = "#111";
    ctx.font = "12px Helvetica, Arial, sans-serif";
    ctx.textAlign = "center";
    blocks.forEach(function (b) {
      var top = toScreen(toCamera([b.centre[0], b.centre[1] + b.size[1] / 2 + 0.25, b.centre[2]]));
      ctx.fillText(b.index + " " + b.kind, top[0], top[1]);
    });
  }

  function box2d(b) {
    var x = view.panX + (20 + b.column * (BOX_W + GAP_X)) * view.zoom;
    var y = view.panY + (20 + b.rank * (BOX_H + GAP_Y)) * view.zoom;
    return [x, y, BOX_W * view.zoom, BOX_H * view.zoom];
  }

  function draw2d() {
    hits = [];
    edges.forEach(function (e) {
      var s = box2d(blocks[e.from]), t = box2d(blocks[e.to]);
      if (e.skip) {
        var bulge = Math.max(s[0], t[0]) + s[2] + 30 * view.zoom;
        arrow([s[0] + s[2], s[1] + s[3] / 2, bulge, (s[1] + t[1] + t[3]) / 2],
          [t[0] + t[2], t[1] + t[3] / 2], e.direct ? "#222" : "#888", !e.direct);
      } else {
        arrow([s[0] + s[2] / 2, s[1] + s[3]], [t[0] + t[2] / 2, t[1]], e.direct ? "#222" : "#888", !e.direct);
      }
    });
    ctx.textAlign = "center";
    blocks.forEach(function (b, i) {
      var r = box2d(b), lit = i === hover || i === pinned;
      ctx.fillStyle = b.colour;
      ctx.fillRect(r[0], r[1], r[2], r[3]);
      ctx.strokeStyle = lit ? "#d62728" : "#000";
      ctx.lineWidth = lit ? 2 : 1;
      ctx.strokeRect(r[0], r[1], r[2], r[3]);
      ctx.lineWidth = 1;
      ctx.fillStyle = "#000";
      b.label.forEach(function (line, n) {
        ctx.font = (n ? "" : "bold ") + Math.round(11 * view.zoom) + "px Helvetica, Arial, sans-serif";
        ctx.fillText(line, r[0] + r[2] / 2, r[1] + (14 + n * 14) * view.zoom);
      });
      hits.push({block: i, polygon: [[r[0], r[1]], [r[0] + r[2], r[1]], [r[0] + r[2], r[1] + r[3]], [r[0], r[1] + r[3]]]});
    });
  }

  function draw() {
    ctx.clearRect(0, 0, canvas.clientWidth, canvas.clientHeight);
    if (view.mode === "3d") draw3d(); else draw2d();
  }

  function inside(q, poly) {
    var yes = false;
    for (var i = 0, j = poly.length - 1; i < poly.length; j = i++) {
      var a = poly[i], b = poly[j];
      if ((a[1] > q[1]) !== (b[1] > q[1]) && q[0] < (b[0] - a[0]) * (q[1] - a[1]) / (b[1] - a[1]) + a[0]) yes = !yes;
    }
    return yes;
  }

  function blockAt(x, y) {
    for (var i = 0; i < hits.length; i++) if (inside([x, y], hits[i].polygon)) return hits[i].block;
    return -1;
  }

  function describe(i) {
    if (i < 0) return "";
    var b = blocks[i];
    return [["layer", b.index + ". " + b.name], ["type", b.type], ["kind", b.kind], ["output shape", b.shape],
      ["parameters", b.params.toLocaleString("en")], ["activation", b.activation || "none"]]
      .map(function (row) { return "<div><span>" + row[0] + "</span> " + escape(String(row[1])) + "</div>"; })
      .join("");
  }

  function escape(text) {
    return text.replace(/[&<>"]/g, function (c) { return {"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;"}[c]; });
  }

  function show() {
    var i = pinned >= 0 ? pinned : hover;
    details.innerHTML = describe(i);
    details.style.display = i >= 0 ? "block" : "none";
  }

  function setMode(mode) {
    view.mode = mode;
    if (mode === "2d") {
      view.zoom = Math.max(0.2, Math.min(1, (canvas.clientHeight - 20) / (20 + ranks * (BOX_H + GAP_Y))));
      view.panX = view.panY = 0;
    }
    toggle.textContent = mode === "3d" ? "2D" : "3D";
    hover = -1;
    draw();
    show();
  }

  var drag = null;
  canvas.addEventListener("mousedown", function (ev) { drag = {x: ev.clientX, y: ev.clientY, moved: false}; });
  window.addEventListener("mouseup", function () { setTimeout(function () { drag = null; }, 0); });
  canvas.addEventListener("mousemove", function (ev) {
    if (drag && (ev.buttons & 1)) {
      var dx = ev.clientX - drag.x, dy = ev.clientY - drag.y;
      drag.x = ev.clientX; drag.y = ev.clientY; drag.moved = drag.moved || Math.abs(dx) + Math.abs(dy) > 2;
      if (view.mode === "3d") {
        view.yaw += dx * 0.01;
        view.pitch = Math.max(-1.5, Math.min(1.5, view.pitch + dy * 0.01));
      } else {
        view.panX += dx; view.panY += dy;
      }
      draw();
      return;
    }
    var rect = canvas.getBoundingClientRect(), found = blockAt(ev.clientX - rect.left, ev.clientY - rect.top);
    if (found !== hover) { hover = found; draw(); show(); }
  });
  canvas.addEventListener("click", function (ev) {
    if (drag && drag.moved) return;
    var rect = canvas.getBoundingClientRect();
    pinned = blockAt(ev.clientX - rect.left, ev.clientY - rect.top);
    draw();
    show();
  });
  canvas.addEventListener("wheel", function (ev) {
    ev.preventDefault();
    var factor = Math.exp(ev.deltaY * 0.001);
    if (view.mode === "3d") view.dist = Math.max(radius * 0.5, Math.min(radius * 12, view.dist * factor));
    else view.zoom = Math.max(0.2, Math.min(4, view.zoom / factor));
    draw();
  }, {passive: false});
  toggle.addEventListener("click", function () { setMode(view.mode === "3d" ? "2d" : "3d"); });
  window.addEventListener("resize", resize);

  window.hpoScene = {
    blocks: blocks,
    edges: edges,
    view: view,
    setMode: setMode,
    blockAt: blockAt,
    pick: function (i) { pinned = i; draw(); show(); return details.textContent; },
    hits: function () { return hits; }
  };
  resize();
})();
