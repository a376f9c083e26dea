// cnnkit serve's page: draw or drop an image, see the model's input, its top classes as bars
// (live while drawing), Grad-CAM and each convolution's feature maps. Plain JS, no library.
// Everything it asks for is this server's JSON API (see /docs).
"use strict";

const $ = (id) => document.getElementById(id);
const INK = 20;            // stroke width on the 280-pixel canvas: MNIST's thick pen
let card = null;
const strokes = [];        // the drawing: a list of strokes, each a list of [x, y]
let drawing = false;

// -- requests: one at a time per kind, the latest wins ----------------------------------------
// While a request is out, newer input waits in `next`; when it returns, the newest is sent.
// body[data-idle] is "true" only when nothing is out or waiting (the browser test waits on it).
const lanes = { predict: { busy: false, next: null }, inspect: { busy: false, next: null } };

function updateIdle() {
  const idle = !Object.values(lanes).some((l) => l.busy || l.next);
  document.body.dataset.idle = String(idle);
}

function send(kind, input) {
  const lane = lanes[kind];
  lane.next = input;
  updateIdle();
  if (!lane.busy) pump(kind);
}

async function pump(kind) {
  const lane = lanes[kind];
  const input = lane.next;
  lane.next = null;
  lane.busy = true;
  updateIdle();
  try {
    const answer = await post(kind, input);
    if (answer && !lane.next) (kind === "predict" ? showPrediction : showInside)(answer);
  } finally {
    lane.busy = false;
    if (lane.next) pump(kind); else updateIdle();
  }
}

async function post(kind, input) {
  const k = card ? card.top_k : 5;
  const url = `/api/${kind}?mode=${input.mode}` + (kind === "predict" ? `&top_k=${k}` : "");
  let response;
  if (input.file) {
    const form = new FormData();
    form.append("file", input.file);
    response = await fetch(url, { method: "POST", body: form });
  } else {
    response = await fetch(url, { method: "POST", headers: { "Content-Type": "application/json" },
                                  body: JSON.stringify({ image: input.dataUrl }) });
  }
  const body = await response.json().catch(() => ({ error: `HTTP ${response.status}` }));
  if (!response.ok) {
    $(kind === "predict" ? "status" : "cam-note").textContent = body.error || `HTTP ${response.status}`;
    return null;
  }
  $("status").textContent = "";
  return body;
}

// -- showing answers --------------------------------------------------------------------------
function showPrediction(p) {
  const input = $("model-input");
  input.src = p.input;
  input.hidden = false;
  const [h, w, c] = p.input_shape;
  $("input-note").textContent = `${h}×${w}×${c}, exactly the pixels the model classified` +
    (p.mode === "drawing" ? " (prepared as MNIST's digits)" : "");
  const bars = $("bars");
  bars.replaceChildren(...p.top_k.map((t, i) => bar(t, i === 0)));
  bars.dataset.top = p.top_k[0].class;
  $("latency").textContent = `${p.runtime}: ${p.model_ms.toFixed(1)} ms in the model, ` +
    `${p.latency_ms.toFixed(1)} ms in the server`;
}


function showInside(r) {
  const cam = $("cam");
  cam.replaceChildren();
  const g = r.grad_cam;
  if (g.gradcam) cam.append(figure(g.gradcam, `Grad-CAM at ${g.layer}, class ${r.class_name}`, "cam"));
  if (g.hirescam) cam.append(figure(g.hirescam, `HiResCAM at ${g.layer}`, "cam"));
  $("cam-note").textContent = g.note || "";
  $("maps").replaceChildren(...r.feature_maps.map((m) => figure(m.image,
    `${m.layer}: ${m.shape.join("×")}` +
    (m.channels_shown < m.shape[2] ? ` (first ${m.channels_shown} channels)` : ""), "map")));
}

function figure(src, caption, cls) {
  const f = el("figure", cls);
  const img = el("img");
  img.src = src;
  img.alt = caption;
  f.append(img, el("figcaption", "", caption));
  return f;
}


// -- the canvas -------------------------------------------------------------------------------
const canvas = $("canvas");
const ctx = canvas.getContext("2d");

function redraw() {
  ctx.fillStyle = "#000";  // opaque black: a transparent canvas would read as white
  ctx.fillRect(0, 0, canvas.width, canvas.height);
  ctx.strokeStyle = ctx.fillStyle = "#fff";
  ctx.lineWidth = INK;
  ctx.lineCap = ctx.lineJoin = "round";
  for (const s of strokes) {
    ctx.beginPath();
    ctx.moveTo(s[0][0], s[0][1]);
    if (s.length === 1) ctx.arc(s[0][0], s[0][1], INK / 2, 0, 2 * Math.PI);
    for (const [x, y] of s.slice(1)) ctx.lineTo(x, y);
    s.length === 1 ? ctx.fill() : ctx.stroke();
  }
}

function point(e) {
  const r = canvas.getBoundingClientRect();
  return [(e.clientX - r.left) * canvas.width / r.width, (e.clientY - r.top) * canvas.height / r.height];
}

function drawingChanged(final) {
  if (!strokes.length) return clearResults();
  const input = { mode: "drawing", dataUrl: canvas.toDataURL("image/png") };
  send("predict", input);  // live, as the stroke grows
  if (final && card.inspect) send("inspect", input);
}

function clearResults() {
  $("bars").replaceChildren();
  delete $("bars").dataset.top;
  $("model-input").hidden = true;
  $("input-note").textContent = "Draw or drop an image.";
  $("cam").replaceChildren();
  $("maps").replaceChildren();
  $("cam-note").textContent = "";
  $("latency").textContent = "";
}

canvas.addEventListener("pointerdown", (e) => {
  e.preventDefault();
  canvas.setPointerCapture(e.pointerId);
  drawing = true;
  strokes.push([point(e)]);
  redraw();
});
canvas.addEventListener("pointermove", (e) => {
  if (!drawing) return;
  strokes[strokes.length - 1].push(point(e));
  redraw();
  drawingChanged(false);
});
for (const type of ["pointerup", "pointercancel"]) {
  canvas.addEventListener(type, () => {
    if (!drawing) return;
    drawing = false;
    drawingChanged(true);
  });
}
$("undo").addEventListener("click", () => { strokes.pop(); redraw(); drawingChanged(true); });
$("clear").addEventListener("click", () => { strokes.length = 0; redraw(); clearResults(); });

// -- files: the picker and the drop zone ------------------------------------------------------
function useFile(file) {
  if (!file) return;
  const shown = $("dropped");
  if (shown.src.startsWith("blob:")) URL.revokeObjectURL(shown.src);
  shown.src = URL.createObjectURL(file);
  shown.hidden = false;
  const input = { mode: $("as-drawing").checked ? "drawing" : "image", file };
  send("predict", input);
  if (card.inspect) send("inspect", input);
}

const drop = $("drop");
drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (e) => {
  e.preventDefault();
  drop.classList.remove("over");
  useFile(e.dataTransfer.files[0]);
});
$("file").addEventListener("change", (e) => { useFile(e.target.files[0]); e.target.value = ""; });

// -- the model's card -------------------------------------------------------------------------
async function start() {
  card = await (await fetch("/api/model")).json();
  document.title = `cnnkit serve: ${card.name}`;
  $("title").textContent = card.name;
  const acc = card.test_accuracy == null ? "none (not from a finished run)"
    : `${(100 * card.test_accuracy).toFixed(2)}%`;
  $("facts").textContent = `${card.input_shape.join("×")} input · ${card.classes.length} classes · ` +
    `test accuracy ${acc} · runtime ${card.runtime}`;
  const facts = [["name", card.name], ["input shape", card.input_shape.join(" × ")],
    ["classes", card.classes.join(", ")], ["test accuracy", acc], ["runtime", card.runtime],
    ["limits", `${(card.limits.max_upload_bytes / 2 ** 20).toFixed(1)} MiB, ` +
      `${card.limits.max_pixels.toLocaleString()} pixels, ${card.limits.request_seconds} s`]];
  $("card-facts").replaceChildren(...facts.flatMap(([k, v]) => [el("dt", "", k), el("dd", "", v)]));
  $("summary").textContent = card.summary || "";
  $("draw").hidden = !card.drawing;
  $("as-drawing-label").hidden = !card.drawing;
  if (!card.drawing) $("input-note").textContent = `A ${card.input_shape[2]}-channel model: drop an image.`;
  if (!card.inspect) $("cam-note").textContent = "This server runs a bare .onnx file: no feature maps or Grad-CAM.";
  redraw();
  document.body.dataset.ready = "true";
}

start();
