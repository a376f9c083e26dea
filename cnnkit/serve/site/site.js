// A page that classifies images in the browser: the exported ONNX graph on onnxruntime-web
// (WebAssembly, files beside this page), fed uint8 pixels (1, H, W, C) as `cnnkit export`
// wrote it. The drawing canvas, a dropped image and the camera are resized to the model's
// input and shown as the pixels the model saw; the bars are those of `cnnkit serve`'s page.
"use strict";

const $ = (id) => document.getElementById(id);
let session = null, meta = null, busy = false, pending = null, stream = null;

// The page's words, English and Korean (bars.js's say/sayAll pick by the browser's language).
const WORDS = {
  en: {
    loading: "Loading the model…", no_server: "Runs in this browser with onnxruntime-web: no server, nothing uploaded.",
    draw_head: "Draw", clear: "Clear", camera: "Camera", drop_head: "Or drop an image",
    drop_zone: "Drop an image here, or click to choose a file", saw_head: "What the model saw",
    start_note: "Draw, drop an image or start the camera.", prediction_head: "Prediction",
    the_drawing: "the drawing", the_camera: "the camera",
    seen: (h, w, c, note) => `${h}×${w}×${c}, exactly the pixels the model classified (${note})`,
    latency: (ms) => `onnxruntime-web: ${ms} ms in this browser`,
    not_image: (name) => `${name}: not an image this browser can read`,
    camera_error: (m) => `camera: ${m}`,
    facts: (n, h, w, c) => `${n} classes, input ${h}×${w}×${c}`,
    accuracy: (a) => `, test accuracy ${a}%`,
    failed: (m) => `could not load the model: ${m}`,
  },
  ko: {
    loading: "모델을 불러오는 중…", no_server: "onnxruntime-web으로 이 브라우저에서 실행됩니다: 서버 없음, 업로드 없음.",
    draw_head: "그리기", clear: "지우기", camera: "카메라", drop_head: "또는 이미지 놓기",
    drop_zone: "여기에 이미지를 끌어다 놓거나 눌러서 파일을 고르세요", saw_head: "모델이 본 것",
    start_note: "그리거나 이미지를 놓거나 카메라를 켜세요.", prediction_head: "예측",
    the_drawing: "그림", the_camera: "카메라",
    seen: (h, w, c, note) => `${h}×${w}×${c}, 모델이 분류한 바로 그 픽셀 (${note})`,
    latency: (ms) => `onnxruntime-web: 이 브라우저에서 ${ms} ms`,
    not_image: (name) => `${name}: 이 브라우저가 읽을 수 있는 이미지가 아닙니다`,
    camera_error: (m) => `카메라: ${m}`,
    facts: (n, h, w, c) => `클래스 ${n}개, 입력 ${h}×${w}×${c}`,
    accuracy: (a) => `, 테스트 정확도 ${a}%`,
    failed: (m) => `모델을 불러오지 못했습니다: ${m}`,
  },
};

// Pillow's ITU-R 601 luma in 16-bit fixed point: gray here is what Image.convert("L") gives.
function toPixels(source) {
  const [h, w, c] = meta.input_shape;
  const view = $("model-input");
  view.width = w; view.height = h;
  const ctx = view.getContext("2d", { willReadFrequently: true });
  ctx.imageSmoothingQuality = "high";
  ctx.drawImage(source, 0, 0, w, h);
  const image = ctx.getImageData(0, 0, w, h), rgba = image.data;
  const px = new Uint8Array(h * w * c);
  for (let i = 0; i < h * w; i++) {
    const r = rgba[4 * i], g = rgba[4 * i + 1], b = rgba[4 * i + 2];
    if (c === 1) {
      px[i] = (19595 * r + 38470 * g + 7471 * b + 32768) >> 16;
      rgba[4 * i] = rgba[4 * i + 1] = rgba[4 * i + 2] = px[i];  // shown as the model sees it
    } else { px[3 * i] = r; px[3 * i + 1] = g; px[3 * i + 2] = b; }
    rgba[4 * i + 3] = 255;
  }
  ctx.putImageData(image, 0, 0);
  return px;
}

// Class probabilities for n images of uint8 pixels (n, H, W, C): the test's entry point too.
async function classify(pixels, n) {
  const [h, w, c] = meta.input_shape;
  const input = new ort.Tensor("uint8", Uint8Array.from(pixels), [n, h, w, c]);
  const out = await session.run({ [session.inputNames[0]]: input });
  return out[session.outputNames[0]].data;
}
window.cnnkitClassify = async (pixels, n) => Array.from(await classify(pixels, n));

async function show(source, note) {
  if (busy) { pending = [source, note]; return; }
  busy = true;
  try {
    const t0 = performance.now();
    const probs = await classify(toPixels(source), 1);
    const ms = performance.now() - t0;
    const top = Array.from(probs, (p, i) => ({ class: meta.class_names[i], probability: p }))
      .sort((a, b) => b.probability - a.probability).slice(0, 5);
    $("bars").replaceChildren(...top.map((t, i) => bar(t, i === 0)));
    $("bars").dataset.top = top[0].class;
    const [h, w, c] = meta.input_shape;
    $("input-note").textContent = say(WORDS, "seen", h, w, c, note in WORDS.en ? say(WORDS, note) : note);
    $("latency").textContent = say(WORDS, "latency", ms.toFixed(1));
  } catch (e) {
    $("status").textContent = String(e);
  } finally {
    busy = false;
    if (pending) { const [s, n] = pending; pending = null; show(s, n); }
  }
}

// -- drawing: white ink on black, MNIST's way round ------------------------------------------
const canvas = $("canvas"), pen = canvas.getContext("2d");
function clear() { pen.fillStyle = "#000"; pen.fillRect(0, 0, canvas.width, canvas.height); }
let last = null;
canvas.addEventListener("pointerdown", (e) => { last = [e.offsetX, e.offsetY]; });
canvas.addEventListener("pointermove", (e) => {
  if (!last) return;
  pen.strokeStyle = "#fff"; pen.lineWidth = 20; pen.lineCap = "round";
  pen.beginPath(); pen.moveTo(...last); pen.lineTo(e.offsetX, e.offsetY); pen.stroke();
  last = [e.offsetX, e.offsetY];
  show(canvas, "the_drawing");
});
window.addEventListener("pointerup", () => { if (last) show(canvas, "the_drawing"); last = null; });
$("clear").addEventListener("click", () => { clear(); $("bars").replaceChildren(); });

// -- a dropped or chosen file -----------------------------------------------------------------
function useFile(file) {
  const img = new Image();
  img.onload = () => { show(img, file.name); URL.revokeObjectURL(img.src); };
  img.onerror = () => { $("status").textContent = say(WORDS, "not_image", file.name); };
  img.src = URL.createObjectURL(file);
}
$("file").addEventListener("change", (e) => e.target.files[0] && useFile(e.target.files[0]));
$("drop").addEventListener("dragover", (e) => e.preventDefault());
$("drop").addEventListener("drop", (e) => { e.preventDefault(); if (e.dataTransfer.files[0]) useFile(e.dataTransfer.files[0]); });

// -- the camera: a frame whenever the last one is answered --------------------------------------
$("camera").addEventListener("click", async () => {
  const video = $("video");
  if (stream) { stream.getTracks().forEach((t) => t.stop()); stream = null; video.hidden = true; return; }
  try {
    stream = await navigator.mediaDevices.getUserMedia({ video: true });
  } catch (e) {
    $("status").textContent = say(WORDS, "camera_error", e.message);
    return;
  }
  video.srcObject = stream; video.hidden = false;
  const tick = async () => {
    if (!stream) return;
    if (video.readyState >= 2) await show(video, "the_camera");
    requestAnimationFrame(tick);
  };
  tick();
});

async function start() {
  sayAll(WORDS);
  clear();
  try {
    meta = await (await fetch("model.json")).json();
    ort.env.wasm.wasmPaths = new URL("ort/", location.href).href;  // beside this page
    ort.env.wasm.numThreads = 1;  // threads need cross-origin isolation, which a plain host lacks
    session = await ort.InferenceSession.create("model.onnx", { executionProviders: ["wasm"] });
    const [h, w, c] = meta.input_shape;
    $("title").textContent = meta.name;
    useClasses(meta.class_names);
    $("facts").textContent = say(WORDS, "facts", meta.class_names.length, h, w, c) +
      (meta.test_accuracy == null ? "" : say(WORDS, "accuracy", (100 * meta.test_accuracy).toFixed(2)));
    document.body.dataset.ready = "true";
  } catch (e) {
    $("facts").textContent = say(WORDS, "failed", e.message || e);
    document.body.dataset.ready = "error";
  }
}
start();
