// cnnkit serve's page: draw, drop an image or hold things up to the camera, see the model's
// input, its top classes as bars (live while drawing or filming), Grad-CAM and each
// convolution's feature maps. Plain JS, no library; English or Korean (bars.js's LANG).
// Everything it asks for is this server's JSON API (see /docs).
"use strict";

const $ = (id) => document.getElementById(id);
const INK = 20;            // stroke width on the 280-pixel canvas: MNIST's thick pen
let card = null;
const strokes = [];        // the drawing: a list of strokes, each a list of [x, y]
let drawing = false;

// The page's words, English and Korean (bars.js's say/sayAll pick by the browser's language).
const WORDS = {
  en: {
    draw_head: "Draw", undo: "Undo", clear: "Clear",
    draw_note: "Drawn white on black, then prepared as MNIST's digits were: the ink's box " +
      "scaled into 20×20, centred by its centre of mass in 28×28.",
    camera_head: "Or the camera", camera_start: "Camera", camera_stop: "Stop the camera",
    drop_head: "Or drop an image", drop_zone: "Drop an image here, or click to choose a file",
    as_drawing: "prepare it as a handwritten digit (ink on paper)",
    saw_head: "What the model saw", prediction_head: "Prediction", maps_head: "Feature maps",
    model_head: "The model", summary: "Summary", api_docs: "API docs",
    start_note: "Draw or drop an image.",
    rgb_note: (c) => `A ${c}-channel model: drop an image.`,
    seen: (h, w, c) => `${h}×${w}×${c}, exactly the pixels the model classified`,
    as_mnist: " (prepared as MNIST's digits)", from_camera: " (a camera frame)",
    latency: (rt, model, server) => `${rt}: ${model} ms in the model, ${server} ms in the server`,
    fps: (fps, n, s) => `${fps} frames/s (${n} frames answered in the last ${s} s)`,
    camera_error: (m) => `camera: ${m}`,
    camera_insecure: "camera: browsers allow it only on https:// or localhost (this page is neither)",
    facts: (shape, n, acc, rt) => `${shape} input · ${n} classes · test accuracy ${acc} · runtime ${rt}`,
    no_accuracy: "none (not from a finished run)",
    card_keys: ["name", "input shape", "classes", "test accuracy", "runtime", "limits"],
    pixels: "pixels",
    gradcam: (layer, c) => `Grad-CAM at ${layer}, class ${c}`, hirescam: (layer) => `HiResCAM at ${layer}`,
    first_channels: (n) => ` (first ${n} channels)`,
    bare_onnx: "This server runs a bare .onnx file: no feature maps or Grad-CAM.",
  },
  ko: {
    draw_head: "그리기", undo: "되돌리기", clear: "지우기",
    draw_note: "검은 바탕에 흰색으로 그린 뒤 MNIST 숫자와 똑같이 준비합니다: 잉크 영역을 " +
      "20×20으로 줄이고 질량 중심으로 28×28 가운데에 놓습니다.",
    camera_head: "또는 카메라", camera_start: "카메라", camera_stop: "카메라 끄기",
    drop_head: "또는 이미지 놓기", drop_zone: "여기에 이미지를 끌어다 놓거나 눌러서 파일을 고르세요",
    as_drawing: "손글씨 숫자로 준비하기 (종이 위의 잉크)",
    saw_head: "모델이 본 것", prediction_head: "예측", maps_head: "특징 맵",
    model_head: "모델", summary: "요약", api_docs: "API 문서",
    start_note: "그리거나 이미지를 놓으세요.",
    rgb_note: (c) => `${c}채널 모델입니다: 이미지를 놓으세요.`,
    seen: (h, w, c) => `${h}×${w}×${c}, 모델이 분류한 바로 그 픽셀`,
    as_mnist: " (MNIST 숫자처럼 준비함)", from_camera: " (카메라 프레임)",
    latency: (rt, model, server) => `${rt}: 모델 ${model} ms, 서버 ${server} ms`,
    fps: (fps, n, s) => `초당 ${fps} 프레임 (최근 ${s}초 동안 ${n}프레임 응답)`,
    camera_error: (m) => `카메라: ${m}`,
    camera_insecure: "카메라: 브라우저는 https:// 또는 localhost에서만 허용합니다 (이 페이지는 둘 다 아님)",
    facts: (shape, n, acc, rt) => `입력 ${shape} · 클래스 ${n}개 · 테스트 정확도 ${acc} · 런타임 ${rt}`,
    no_accuracy: "없음 (끝난 실행에서 온 모델이 아님)",
    card_keys: ["이름", "입력 모양", "클래스", "테스트 정확도", "런타임", "제한"],
    pixels: "픽셀",
    gradcam: (layer, c) => `${layer}의 Grad-CAM, 클래스 ${c}`, hirescam: (layer) => `${layer}의 HiResCAM`,
    first_channels: (n) => ` (처음 ${n}개 채널)`,
    bare_onnx: "이 서버는 .onnx 파일만 실행합니다: 특징 맵과 Grad-CAM이 없습니다.",
  },
};

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
    if (answer && input.mode === "camera") frameAnswered();
    if (answer && !lane.next) (kind === "predict" ? showPrediction : showInside)(answer);
  } finally {
    lane.busy = false;
    if (!lane.next && kind === "predict" && camera.stream) nextFrame();
    if (lane.next) pump(kind); else updateIdle();
  }
}

async function post(kind, input) {
  const k = card ? card.top_k : 5;
  const mode = input.mode === "camera" ? "image" : input.mode;  // a frame is an ordinary image
  const url = `/api/${kind}?mode=${mode}` + (kind === "predict" ? `&top_k=${k}` : "");
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
  $("input-note").textContent = say(WORDS, "seen", h, w, c) +
    (p.mode === "drawing" ? say(WORDS, "as_mnist") : camera.stream ? say(WORDS, "from_camera") : "");
  const bars = $("bars");
  bars.replaceChildren(...p.top_k.map((t, i) => bar(t, i === 0)));
  bars.dataset.top = p.top_k[0].class;
  $("latency").textContent = say(WORDS, "latency", p.runtime, p.model_ms.toFixed(1),
                                 p.latency_ms.toFixed(1));
}


function showInside(r) {
  const cam = $("cam");
  cam.replaceChildren();
  const g = r.grad_cam;
  if (g.gradcam) cam.append(figure(g.gradcam, say(WORDS, "gradcam", g.layer, className(r.class_name)), "cam"));
  if (g.hirescam) cam.append(figure(g.hirescam, say(WORDS, "hirescam", g.layer), "cam"));
  $("cam-note").textContent = g.note || "";
  $("maps").replaceChildren(...r.feature_maps.map((m) => figure(m.image,
    `${m.layer}: ${m.shape.join("×")}` +
    (m.channels_shown < m.shape[2] ? say(WORDS, "first_channels", m.channels_shown) : ""), "map")));
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
  stopCamera();
  if (!strokes.length) return clearResults();
  const input = { mode: "drawing", dataUrl: canvas.toDataURL("image/png") };
  send("predict", input);  // live, as the stroke grows
  if (final && card.inspect) send("inspect", input);
}

function clearResults() {
  $("bars").replaceChildren();
  delete $("bars").dataset.top;
  $("model-input").hidden = true;
  $("input-note").textContent = say(WORDS, "start_note");
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
  stopCamera();
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

// -- the camera: a frame goes out whenever the last one is answered --------------------------
// Frames share the predict lane: one request out at a time, so the server's concurrency limit
// and queue hold however fast the camera runs. The rate shown is answered frames per second
// over the last FPS_WINDOW seconds: (frames in the window - 1) / (last answer - first answer).
const FPS_WINDOW = 2;
const FRAME_WIDTH = 160;   // frames are scaled to this before sending: every model here is smaller
const camera = { stream: null, answers: [] };  // answers: performance.now() of each, in the window
const grab = document.createElement("canvas");

function nextFrame() {
  const video = $("video");
  if (video.readyState < 2 || !video.videoWidth) {  // no picture yet: try again next frame
    requestAnimationFrame(() => camera.stream && !lanes.predict.busy && nextFrame());
    return;
  }
  grab.width = FRAME_WIDTH;
  grab.height = Math.round(FRAME_WIDTH * video.videoHeight / video.videoWidth);
  grab.getContext("2d").drawImage(video, 0, 0, grab.width, grab.height);
  send("predict", { mode: "camera", dataUrl: grab.toDataURL("image/jpeg", 0.9) });
}

function frameAnswered() {
  const now = performance.now();
  camera.answers.push(now);
  while (now - camera.answers[0] > FPS_WINDOW * 1000) camera.answers.shift();
  const n = camera.answers.length;
  const seconds = (now - camera.answers[0]) / 1000;
  const fps = n > 1 ? (n - 1) / seconds : 0;
  const shown = $("fps");
  shown.dataset.fps = fps.toFixed(2);
  shown.dataset.frames = String(Number(shown.dataset.frames || 0) + 1);
  shown.textContent = say(WORDS, "fps", fps.toFixed(1), n, FPS_WINDOW);
}

async function startCamera() {
  if (!navigator.mediaDevices) {  // only secure contexts have it
    $("status").textContent = say(WORDS, "camera_insecure");
    return;
  }
  try {
    camera.stream = await navigator.mediaDevices.getUserMedia({ video: true });
  } catch (e) {
    $("status").textContent = say(WORDS, "camera_error", e.message || e.name);
    return;
  }
  strokes.length = 0;
  redraw();
  const video = $("video");
  video.srcObject = camera.stream;
  video.hidden = false;
  camera.answers = [];
  $("fps").dataset.frames = "0";
  $("camera").textContent = say(WORDS, "camera_stop");
  video.addEventListener("loadeddata", () => { if (!lanes.predict.busy) nextFrame(); }, { once: true });
}

function stopCamera() {
  if (!camera.stream) return;
  camera.stream.getTracks().forEach((t) => t.stop());
  camera.stream = null;
  $("video").hidden = true;
  $("camera").textContent = say(WORDS, "camera_start");
}

$("camera").addEventListener("click", () => (camera.stream ? stopCamera() : startCamera()));

// -- the model's card -------------------------------------------------------------------------
async function start() {
  card = await (await fetch("/api/model")).json();
  document.title = `cnnkit serve: ${card.name}`;
  $("title").textContent = card.name;
  useClasses(card.classes);
  sayAll(WORDS);
  const acc = card.test_accuracy == null ? say(WORDS, "no_accuracy")
    : `${(100 * card.test_accuracy).toFixed(2)}%`;
  $("facts").textContent = say(WORDS, "facts", card.input_shape.join("×"), card.classes.length,
                               acc, card.runtime);
  const facts = [card.name, card.input_shape.join(" × "), card.classes.map(className).join(", "),
    acc, card.runtime, `${(card.limits.max_upload_bytes / 2 ** 20).toFixed(1)} MiB, ` +
      `${card.limits.max_pixels.toLocaleString()} ${say(WORDS, "pixels")}, ${card.limits.request_seconds} s`];
  const keys = say(WORDS, "card_keys");
  $("card-facts").replaceChildren(...facts.flatMap((v, i) => [el("dt", "", keys[i]), el("dd", "", v)]));
  $("summary").textContent = card.summary || "";
  $("draw").hidden = !card.drawing;
  $("as-drawing-label").hidden = !card.drawing;
  $("input-note").textContent = card.drawing ? say(WORDS, "start_note")
    : say(WORDS, "rgb_note", card.input_shape[2]);
  if (!card.inspect) $("cam-note").textContent = say(WORDS, "bare_onnx");
  redraw();
  document.body.dataset.ready = "true";
}

start();
