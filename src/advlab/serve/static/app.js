// advlab web demo: talks to the JSON API of `advlab serve` (no libraries, works offline).
"use strict";

const $ = (id) => document.getElementById(id);
const state = {
  models: [],
  attacks: [],
  classNames: [],
  shape: [28, 28],       // model input H, W
  input: null,           // rows of floats at model size, or null
  inputNote: "",
  curve: null,           // curve JSON of the selected model
  busy: false,
};

// ------------------------------------------------------------------------------ helpers
async function api(path, options) {
  const res = await fetch(path, options);
  let body = null;
  try { body = await res.json(); } catch (e) { body = null; }
  if (!res.ok) {
    const detail = body && body.detail ? body.detail : `${res.status} ${res.statusText}`;
    throw new Error(detail);
  }
  return body;
}

function setStatus(text, error = false) {
  const el = $("status");
  el.textContent = text;
  el.classList.toggle("error", error);
}

function plural(n, one, many = one + "s") { return `${n} ${n === 1 ? one : many}`; }

function pct(p) { return (100 * p).toFixed(p > 0.999 || p < 0.001 ? 2 : 1) + "%"; }

// Draw rows of values onto a canvas, scaled without smoothing. `color(v)` -> [r, g, b].
function drawGrid(canvas, rows, color) {
  const h = rows.length, w = rows[0].length;
  const off = document.createElement("canvas");
  off.width = w; off.height = h;
  const ctx = off.getContext("2d");
  const img = ctx.createImageData(w, h);
  for (let i = 0; i < h; i++) {
    for (let j = 0; j < w; j++) {
      const [r, g, b] = color(rows[i][j]);
      const k = 4 * (i * w + j);
      img.data[k] = r; img.data[k + 1] = g; img.data[k + 2] = b; img.data[k + 3] = 255;
    }
  }
  ctx.putImageData(img, 0, 0);
  const out = canvas.getContext("2d");
  out.imageSmoothingEnabled = false;
  out.clearRect(0, 0, canvas.width, canvas.height);
  out.drawImage(off, 0, 0, canvas.width, canvas.height);
}
const gray = (v) => { const g = Math.round(255 * Math.min(1, Math.max(0, v))); return [g, g, g]; };

// ------------------------------------------------------------------------ drawing canvas
const draw = {
  canvas: null, ctx: null, down: false, last: null, dirty: false, showsSample: false,
  init() {
    this.canvas = $("draw");
    this.ctx = this.canvas.getContext("2d");
    this.clear();
    const c = this.canvas;
    c.addEventListener("pointerdown", (e) => {
      if (this.showsSample) { this.clear(); }
      this.down = true; this.last = this.pos(e); c.setPointerCapture(e.pointerId);
      this.stroke(this.last, this.last);
    });
    c.addEventListener("pointermove", (e) => {
      if (!this.down) return;
      const p = this.pos(e); this.stroke(this.last, p); this.last = p;
    });
    const up = () => { if (this.down) { this.down = false; useDrawing(); } };
    c.addEventListener("pointerup", up);
    c.addEventListener("pointercancel", up);
  },
  pos(e) {
    const r = this.canvas.getBoundingClientRect();
    return [(e.clientX - r.left) * this.canvas.width / r.width,
            (e.clientY - r.top) * this.canvas.height / r.height];
  },
  stroke(a, b) {
    const ctx = this.ctx;
    ctx.strokeStyle = "#fff"; ctx.lineWidth = 22; ctx.lineCap = "round"; ctx.lineJoin = "round";
    ctx.beginPath(); ctx.moveTo(a[0], a[1]); ctx.lineTo(b[0], b[1]); ctx.stroke();
    this.dirty = true;
  },
  clear() {
    this.ctx.fillStyle = "#000";
    this.ctx.fillRect(0, 0, this.canvas.width, this.canvas.height);
    this.dirty = false; this.showsSample = false;
  },
  showSample(rows) {
    drawGrid(this.canvas, rows, gray);
    this.dirty = false; this.showsSample = true;
  },
  // The canvas as rows of ink values in [0, 1] (280 x 280).
  pixels() {
    const { width: w, height: h } = this.canvas;
    const data = this.ctx.getImageData(0, 0, w, h).data;
    const rows = [];
    for (let i = 0; i < h; i++) {
      const row = new Float32Array(w);
      for (let j = 0; j < w; j++) row[j] = data[4 * (i * w + j)] / 255;
      rows.push(row);
    }
    return rows;
  },
};

// Area-average resize of a square `n x n` array to `m x m` (nearest when enlarging).
function resizeSquare(src, n, m) {
  const out = [];
  for (let i = 0; i < m; i++) {
    const row = new Float32Array(m);
    const r0 = Math.floor(i * n / m), r1 = Math.max(r0 + 1, Math.floor((i + 1) * n / m));
    for (let j = 0; j < m; j++) {
      const c0 = Math.floor(j * n / m), c1 = Math.max(c0 + 1, Math.floor((j + 1) * n / m));
      let s = 0;
      for (let a = r0; a < r1; a++) for (let b = c0; b < c1; b++) s += src[a][b];
      row[j] = s / ((r1 - r0) * (c1 - c0));
    }
    out.push(row);
  }
  return out;
}

// The drawing, prepared like the training images: cropped to its ink, made square, scaled to
// a 20 x 20 box centred by centre of mass in 28 x 28 (MNIST), or filling the frame (8 x 8 digits).
function preprocessDrawing() {
  const px = draw.pixels();
  const n = px.length;
  let top = n, bottom = -1, left = n, right = -1;
  for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) {
    if (px[i][j] > 0.1) {
      top = Math.min(top, i); bottom = Math.max(bottom, i);
      left = Math.min(left, j); right = Math.max(right, j);
    }
  }
  if (bottom < 0) return null;
  const side = Math.max(bottom - top, right - left) + 1;
  const sq = [];
  const oy = top - Math.floor((side - (bottom - top + 1)) / 2);
  const ox = left - Math.floor((side - (right - left + 1)) / 2);
  for (let i = 0; i < side; i++) {
    const row = new Float32Array(side);
    for (let j = 0; j < side; j++) {
      const y = oy + i, x = ox + j;
      row[j] = y >= 0 && y < n && x >= 0 && x < n ? px[y][x] : 0;
    }
    sq.push(row);
  }
  const [H] = state.shape;
  if (H !== 28) {
    const pad = Math.max(1, Math.round(side / (H * 4)));  // a thin margin, as the 8x8 digits have
    const padded = [];
    for (let i = 0; i < side + 2 * pad; i++) {
      const row = new Float32Array(side + 2 * pad);
      if (i >= pad && i < side + pad) row.set(sq[i - pad], pad);
      padded.push(row);
    }
    return resizeSquare(padded, side + 2 * pad, H).map((r) => Array.from(r, clip01));
  }
  const box = resizeSquare(sq, side, 20);
  let m = 0, cy = 0, cx = 0;
  for (let i = 0; i < 20; i++) for (let j = 0; j < 20; j++) {
    m += box[i][j]; cy += i * box[i][j]; cx += j * box[i][j];
  }
  const dy = Math.min(8, Math.max(0, Math.round(13.5 - cy / m)));
  const dx = Math.min(8, Math.max(0, Math.round(13.5 - cx / m)));
  const out = [];
  for (let i = 0; i < 28; i++) out.push(new Array(28).fill(0));
  for (let i = 0; i < 20; i++) for (let j = 0; j < 20; j++) out[i + dy][j + dx] = clip01(box[i][j]);
  return out;
}
function clip01(v) { return Math.round(1000 * Math.min(1, Math.max(0, v))) / 1000; }

function useDrawing() {
  const rows = preprocessDrawing();
  document.querySelectorAll("#samples canvas").forEach((c) => c.classList.remove("selected"));
  if (!rows) { setInput(null, ""); return; }
  setInput(rows, "your drawing");
}

function setInput(rows, note) {
  state.input = rows;
  state.inputNote = note;
  $("input-note").textContent = rows ? `Input: ${note}.` : "Click a digit above, or draw with the mouse.";
  $("attack-btn").disabled = !rows || state.busy;
}

// --------------------------------------------------------------------------------- setup
async function loadSamples() {
  const body = await api("/api/samples?n=20");
  state.classNames = body.class_names;
  state.shape = body.shape;
  const box = $("samples");
  box.innerHTML = "";
  body.samples.forEach((s, k) => {
    const c = document.createElement("canvas");
    c.width = 56; c.height = 56;
    c.className = "sample";
    c.title = `test image #${s.index}, label ${body.class_names[s.label]}`;
    c.dataset.label = s.label;
    drawGrid(c, s.image, gray);
    c.addEventListener("click", () => {
      box.querySelectorAll("canvas").forEach((x) => x.classList.remove("selected"));
      c.classList.add("selected");
      draw.showSample(s.image);
      setInput(s.image, `test image #${s.index} (label ${body.class_names[s.label]})`);
    });
    box.appendChild(c);
  });
  const target = $("target");
  body.class_names.forEach((name, i) => {
    const o = document.createElement("option");
    o.value = String(i); o.textContent = `class ${name}`;
    target.appendChild(o);
  });
}

function option(value, text) {
  const o = document.createElement("option");
  o.value = value; o.textContent = text;
  return o;
}

async function loadMenus() {
  const [m, a] = await Promise.all([api("/api/models"), api("/api/attacks")]);
  state.models = m.models;
  state.attacks = a.attacks;
  const ms = $("model");
  m.models.forEach((x) => ms.appendChild(option(x.name, x.label)));
  const as = $("attack");
  a.attacks.forEach((x) => as.appendChild(option(x.name, x.label)));
  const hw = m.models.length ? m.models[0].input_shape.slice(1).join("×") : "";
  $("subtitle").textContent =
    `Dataset: ${m.dataset} (${hw} images) · ${m.models.length} models · ${a.attacks.length} attacks · ` +
    "white digit on black, eps in pixel units (0–1)";
  onModel();
  onAttack();
}

const currentModel = () => state.models.find((x) => x.name === $("model").value);
const currentAttack = () => state.attacks.find((x) => x.name === $("attack").value);

// The request's adaptive flag: only for a defended model, when the box is ticked.
const isAdaptive = () => { const m = currentModel(); return !!(m && m.defense && $("adaptive").checked); };

function onModel() {
  const m = currentModel();
  if (!m) return;
  let acc = "";
  if (m.clean_accuracy != null) {
    const on = m.clean_n ? ` (${m.clean_n.toLocaleString("en")} test images)` : "";
    acc = m.detects
      ? ` Clean test accuracy ${pct(m.clean_accuracy)}${on}, counting only digits the detector accepts;` +
        ` it rejects ${pct(m.clean_rejected || 0)} of clean test digits.`
      : ` Clean test accuracy ${pct(m.clean_accuracy)}${on}.`;
  }
  const te = m.train_eps == null ? "" : ` Trained at eps ${m.train_eps}.`;
  $("model-desc").textContent = m.description + acc + te;
  $("defense-box").hidden = !m.defense;
  onAdaptive();
  const eps = $("eps");
  eps.min = m.eps.min; eps.max = m.eps.max; eps.step = m.eps.step;
  if (Number(eps.value) > m.eps.max || !eps.dataset.touched) eps.value = m.eps.default;
  onEps();
  loadCurve(m.name);
}

function onAdaptive() {
  const m = currentModel();
  if (m && m.defense) $("view-desc").textContent = isAdaptive() ? m.defense.adaptive : m.defense.naive;
  limitSteps();
}

// The steps slider's range: the attack's, capped for adaptive attacks on expensive defenses.
function limitSteps() {
  const a = currentAttack(), m = currentModel();
  if (!a || !a.steps) return;
  const steps = $("steps");
  const cap = isAdaptive() && m.defense.adaptive_max_steps ? m.defense.adaptive_max_steps : null;
  const max = cap == null ? a.steps.max : Math.max(a.steps.min, Math.min(a.steps.max, cap));
  steps.max = max;
  if (Number(steps.value) > max) steps.value = max;
  $("steps-value").textContent = steps.value;
}

function onAttack() {
  const a = currentAttack();
  if (!a) return;
  $("attack-desc").textContent = a.description;
  const steps = $("steps");
  if (a.steps) {
    steps.disabled = false;
    steps.min = a.steps.min; steps.max = a.steps.max; steps.value = a.steps.default;
    $("steps-label").textContent = a.steps.label;
  } else {
    steps.disabled = true;
    $("steps-label").textContent = "steps (one step)";
  }
  $("steps-value").textContent = a.steps ? steps.value : "1";
  limitSteps();
  $("eps").disabled = !a.uses_eps;
  $("target").disabled = !a.targeted;
  if (!a.targeted) $("target").value = "";
  onEps();
}

function onEps() {
  const a = currentAttack();
  $("eps-value").textContent = a && !a.uses_eps ? "not used" : Number($("eps").value).toFixed(2);
  drawCurve();
}

// ---------------------------------------------------------------------------------- curve
async function loadCurve(name) {
  state.curve = null;
  $("curve-note").textContent = "(computing…)";
  $("curve-desc").textContent = "";
  drawCurve();
  try {
    const c = await api(`/api/curve?model=${encodeURIComponent(name)}`);
    if ($("model").value !== name) return;
    state.curve = c;
    $("curve-note").textContent = `(${c.n} test images, PGD-${c.pgd_steps})`;
    $("curve-desc").textContent = c.note || "";
  } catch (e) {
    $("curve-note").textContent = `(unavailable: ${e.message})`;
  }
  drawCurve();
}

function svg(tag, attrs, text) {
  const el = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
  if (text != null) el.textContent = text;
  return el;
}

function drawCurve() {
  const root = $("curve");
  root.innerHTML = "";
  const m = currentModel();
  const W = 460, H = 230, L = 40, R = 140, T = 10, B = 34;
  const emax = m ? m.eps.max : 0.5;
  const X = (e) => L + (W - L - R) * e / emax;
  const Y = (a) => T + (H - T - B) * (1 - a);
  for (let k = 0; k <= 4; k++) {
    const a = k / 4;
    root.appendChild(svg("line", { x1: L, x2: W - R, y1: Y(a), y2: Y(a), class: "grid" }));
    root.appendChild(svg("text", { x: L - 6, y: Y(a) + 4, "text-anchor": "end" }, `${100 * a}%`));
  }
  const ticks = 5;
  for (let k = 0; k <= ticks; k++) {
    const e = emax * k / ticks;
    root.appendChild(svg("text", { x: X(e), y: H - B + 16, "text-anchor": "middle" }, e.toFixed(2)));
  }
  root.appendChild(svg("line", { x1: L, x2: W - R, y1: Y(0), y2: Y(0), class: "axis" }));
  root.appendChild(svg("line", { x1: L, x2: L, y1: Y(0), y2: Y(1), class: "axis" }));
  root.appendChild(svg("text", { x: (L + W - R) / 2, y: H - 3, "text-anchor": "middle" }, "eps (L∞)"));
  const a = currentAttack();
  if (a && a.uses_eps) {
    const e = Number($("eps").value);
    root.appendChild(svg("line", { x1: X(e), x2: X(e), y1: Y(0), y2: Y(1), class: "eps-marker" }));
  }
  const c = state.curve;
  if (!c) return;
  const labels = c.labels && Object.keys(c.labels).length ? c.labels
    : { "fgsm": "FGSM", "pgd": `PGD-${c.pgd_steps}`, "pgd-margin": `PGD-${c.pgd_steps} margin` };
  let ly = T + 8;
  for (const [name, acc] of Object.entries(c.curves)) {
    const pts = c.eps.map((e, i) => `${X(e).toFixed(1)},${Y(acc[i]).toFixed(1)}`).join(" ");
    root.appendChild(svg("polyline", { points: pts, class: `line l-${name}` }));
    root.appendChild(svg("line", { x1: W - R + 12, x2: W - R + 34, y1: ly, y2: ly, class: `line l-${name}` }));
    root.appendChild(svg("text", { x: W - R + 40, y: ly + 4 }, labels[name] || name));
    ly += 18;
  }
}

// --------------------------------------------------------------------------------- attack
function bars(el, top3, highlight, same) {
  el.innerHTML = "";
  top3.forEach((t) => {
    const row = document.createElement("div");
    row.className = "bar" + (t.cls === highlight ? " top" : "") + (same ? " same" : "");
    row.innerHTML = `<span class="lab"></span><span class="track"><span class="fill"></span></span><span class="pct"></span>`;
    row.querySelector(".lab").textContent = t.label;
    row.querySelector(".fill").style.width = `${(100 * t.prob).toFixed(1)}%`;
    row.querySelector(".pct").textContent = pct(t.prob);
    el.appendChild(row);
  });
}

async function runAttack() {
  if (!state.input || state.busy) return;
  const a = currentAttack();
  const body = {
    image: state.input,
    model: $("model").value,
    attack: a.name,
    eps: Number($("eps").value),
    steps: a.steps ? Number($("steps").value) : 1,
    target: $("target").value === "" ? null : Number($("target").value),
    adaptive: isAdaptive(),
  };
  state.busy = true;
  $("attack-btn").disabled = true;
  setStatus("Attacking…");
  try {
    const t0 = performance.now();
    const r = await api("/api/attack", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body),
    });
    const rtt = performance.now() - t0;
    showResult(r);
    setStatus(`Done: ${r.ms.toFixed(0)} ms on the server, ${rtt.toFixed(0)} ms round trip.`);
  } catch (e) {
    setStatus(`Error: ${e.message}`, true);
  } finally {
    state.busy = false;
    $("attack-btn").disabled = !state.input;
  }
}

function showResult(r) {
  $("result").classList.remove("empty");
  const name = (k) => state.classNames[k] ?? String(k);
  drawGrid($("img-x"), r.x, gray);
  drawGrid($("img-adv"), r.x_adv, gray);
  let m = 0;
  r.perturbation.forEach((row) => row.forEach((v) => { m = Math.max(m, Math.abs(v)); }));
  const scale = m > 0 ? 0.5 / m : 1;
  drawGrid($("img-delta"), r.perturbation, (v) => gray(0.5 + v * scale));
  $("amp").textContent = m > 0 ? `(×${scale.toFixed(1)})` : "(none)";
  $("norms").textContent = `L∞ ${r.linf.toFixed(3)} · L2 ${r.l2.toFixed(2)}`;
  const before = r.top3_before[0].prob, after = r.top3_after[0].prob;
  $("pred-before").textContent = `${name(r.pred_before)} (${pct(before)})`;
  const pa = $("pred-after");
  pa.textContent = `${name(r.pred_after)} (${pct(after)})`;
  const caught = !!(r.rejected && r.rejected.adversarial);
  pa.classList.toggle("changed", r.pred_after !== r.pred_before && !caught);
  bars($("bars-before"), r.top3_before, r.pred_before, false);
  bars($("bars-after"), r.top3_after, r.pred_after, r.pred_after === r.pred_before);
  pa.textContent += caught ? " · rejected" : "";
  const verdict = r.success
    ? (r.target == null ? "fooled: the prediction changed" : `fooled: now classified as ${name(r.target)}`)
    : caught ? "caught: the detector rejected the adversarial input" : "not fooled at this budget";
  const det = $("detector");
  det.hidden = !r.rejected;
  det.className = "detector" + (r.rejected ? (caught ? " caught" : " passed") : "");
  if (r.rejected) {
    det.innerHTML = caught
      ? "<b>Rejected by the detector:</b> the adversarial input is refused, so the attack fails (it counts as defended)."
      : "<b>Accepted by the detector:</b> the adversarial input passes the detector" +
        (r.pred_after !== r.pred_before ? " and is misclassified." : ".");
    if (r.rejected.clean) det.innerHTML += " The input itself was already rejected (for a clean digit: a false positive).";
  }
  const how = r.view === "model" ? "" : ` (${r.view}, crafted on ${r.view === "naive" ? "the classifier alone" : "the adaptive view"})`;
  $("stats").textContent =
    `${r.attack} on ${r.model}${how}: ${verdict}. ${plural(r.gradients, "gradient")}, ${plural(r.queries, "forward pass", "forward passes")}, ${r.ms.toFixed(0)} ms.`;
}

// ----------------------------------------------------------------------------------- main
async function main() {
  draw.init();
  $("clear").addEventListener("click", () => {
    draw.clear();
    document.querySelectorAll("#samples canvas").forEach((c) => c.classList.remove("selected"));
    setInput(null, "");
  });
  $("model").addEventListener("change", onModel);
  $("attack").addEventListener("change", onAttack);
  $("adaptive").addEventListener("change", onAdaptive);
  $("eps").addEventListener("input", () => { $("eps").dataset.touched = "1"; onEps(); });
  $("steps").addEventListener("input", () => { $("steps-value").textContent = $("steps").value; });
  $("attack-btn").addEventListener("click", runAttack);
  try {
    await loadSamples();
    await loadMenus();
    setStatus("Pick or draw a digit, then press Attack.");
  } catch (e) {
    setStatus(`Cannot reach the server: ${e.message}`, true);
  }
}

main();
