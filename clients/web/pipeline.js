// The device side of faceid-sdk, the server's pipeline step for step (faceid_sdk/alignment.py):
// image -> the server's face detector (SSD, decoded here) -> its five-point landmark model ->
// align (align.js) -> FFEM-AM (TF.js graph model) -> L2-normalized Float32Array.
//
// Everything is loaded from ./vendor/ (see prepare.py): TF.js (the copy bundled in face-api),
// the detector and landmark models rebuilt from the OpenVINO files the server ships, the wasm
// backend's binaries and the FFEM-AM export. Nothing is fetched from elsewhere, and no pixel
// leaves this module.
import * as faceapi from "./vendor/face-api.esm.js";

import { TEMPLATE_112, alignFace, normalizePixels } from "./align.js";
import { l2normalize } from "./codec.js";

export const tf = faceapi.tf;

/** Refusal thresholds; a face smaller than this is upscaled too much to be recognised well. */
export const LIMITS = {
  minScore: 0.5, // detector confidence (faceid_sdk.alignment.FaceAligner.min_confidence)
  // Pixels between the eye centres (about a third of the face's width); the template has 35
  // in the 112x112 crop, 30 in the 96x96 input, so below 20 the face is upscaled over 1.5x.
  minEyeDistance: 20,
  // The detector's input side: the smallest of these that is >= 0.85 x the photo's longer
  // side (faceid_sdk/face_models.py, DETECTOR_SIZES).
  detectorSizes: [160, 224, 300],
};

/** True when WebGL runs on a GPU (not a software rasterizer, which is slower than wasm). */
function hardwareWebGL() {
  try {
    const gl = document.createElement("canvas").getContext("webgl2");
    if (!gl) return false;
    const info = gl.getExtension("WEBGL_debug_renderer_info");
    const renderer = String(gl.getParameter(info ? info.UNMASKED_RENDERER_WEBGL : gl.RENDERER));
    return !/swiftshader|llvmpipe|softpipe|software|basic render/i.test(renderer);
  } catch {
    return false;
  }
}

async function pickBackend(requested) {
  const order = requested ? [requested] : hardwareWebGL() ? ["webgl", "wasm"] : ["wasm"];
  for (const name of [...order, "cpu"]) {
    try {
      if (await tf.setBackend(name)) {
        await tf.ready();
        return name;
      }
    } catch {
      // try the next one
    }
  }
  throw new Error("no TF.js backend could start (tried " + order.join(", ") + ", cpu)");
}

const now = () => performance.now();

/**
 * Load the backend and the three models. Returns a pipeline object:
 *   { backend, modelId, dim, metadata, loadMs, process(source) }
 * `requestedBackend`: "wasm", "webgl" or "cpu" to force one (e.g. from ?backend=).
 */
export async function loadPipeline({ base = "./vendor/", requestedBackend } = {}) {
  const t0 = now();
  tf.setWasmPaths(new URL(base + "tfjs-wasm/", location.href).href);
  const backend = await pickBackend(requestedBackend);
  const [model, landmarks, detector] = await Promise.all([
    tf.loadGraphModel(base + "ffem_am/model.json"),
    tf.loadGraphModel(base + "landmarks/model.json"),
    tf.loadGraphModel(base + "detector/model.json"),
  ]);
  const metadata = model.metadata?.faceid ?? {};
  if (!metadata.model_id) {
    throw new Error("vendor/ffem_am/model.json carries no faceid metadata: re-run prepare.py");
  }
  const size = Number(metadata.input_size ?? 96);
  // First runs compile kernels (webgl) or allocate (wasm): pay that now, not on the user.
  const warm = tf.zeros([1, size, size, 3]);
  const out = model.predict(warm);
  await out.data();
  out.dispose();
  warm.dispose();
  detectorModel = detector;
  ssd = detector.metadata?.faceid?.ssd;
  if (!ssd) throw new Error("vendor/detector/model.json carries no SSD settings: re-run prepare.py");
  const blank = document.createElement("canvas");
  blank.width = blank.height = 64;
  await detectFaces(blank);
  landmarkModel = landmarks;
  const warmPoints = landmarks.predict(tf.zeros([1, 48, 48, 3]));
  await warmPoints.data();
  warmPoints.dispose();
  const pipeline = {
    backend,
    modelId: metadata.model_id,
    dim: Number(metadata.dim),
    metadata,
    loadMs: now() - t0,
    process: (source, options) => processImage(model, source, options),
    /** Embed an aligned 96x96 RGB face ({data, width, height, channels}) as it is. */
    embedAligned: (crop) => embed(model, normalizePixels(crop), crop.width),
  };
  return pipeline;
}

let landmarkModel = null;
let detectorModel = null;
let ssd = null;
const LANDMARK_INPUT = 48;

/** The server's landmark model (landmarks-regression-retail-0009, as a TF.js graph) in the
 * square [x0, y0, side] around a face: the template's five points, as the server finds them.
 * Input 48x48 BGR 0..255 (bilinear crop; outside the image is edge-replicated). */
async function refinePoints(canvas, [x0, y0, side]) {
  // As the server does (face_models.py): a face more than twice the input is first shrunk by
  // averaging, so the bilinear crop does not alias.
  const step = side / LANDMARK_INPUT;
  const f = step > 2 ? step / 2 : 1;
  let source = canvas;
  if (f > 1) {
    source = document.createElement("canvas");
    source.width = Math.max(1, Math.round(canvas.width / f));
    source.height = Math.max(1, Math.round(canvas.height / f));
    const ctx = source.getContext("2d");
    ctx.imageSmoothingQuality = "high";
    ctx.drawImage(canvas, 0, 0, source.width, source.height);
  }
  const out = tf.tidy(() => {
    const image = tf.browser.fromPixels(source).toFloat();
    const [h, w] = image.shape;
    // Pixel centres x0 .. x0 + 47/48 side (cv2.warpAffine's sampling); the border replicates.
    const last = (step * (LANDMARK_INPUT - 1)) / f;
    const xs = tf.linspace(x0 / f, x0 / f + last, LANDMARK_INPUT).clipByValue(0, w - 1);
    const ys = tf.linspace(y0 / f, y0 / f + last, LANDMARK_INPUT).clipByValue(0, h - 1);
    const crop = bilinearGrid(image, ys, xs);
    return landmarkModel.predict(crop.reverse(2).expandDims(0));
  });
  const v = await out.data();
  out.dispose();
  const points = [];
  for (let i = 0; i < 5; i++) points.push([x0 + v[2 * i] * side, y0 + v[2 * i + 1] * side]);
  return points;
}

/** Bilinear samples of image (h, w, c) at every (ys[i], xs[j]): (len(ys), len(xs), c). */
function bilinearGrid(image, ys, xs) {
  const [h, w] = image.shape;
  const y0 = ys.floor(), x0 = xs.floor();
  const y1 = y0.add(1).clipByValue(0, h - 1), x1 = x0.add(1).clipByValue(0, w - 1);
  const fy = ys.sub(y0).reshape([-1, 1, 1]), fx = xs.sub(x0).reshape([1, -1, 1]);
  const rows = (y) => tf.gather(image, y.toInt(), 0);
  const cols = (t, x) => tf.gather(t, x.toInt(), 1);
  const top = rows(y0), bottom = rows(y1);
  const tl = cols(top, x0), tr = cols(top, x1), bl = cols(bottom, x0), br = cols(bottom, x1);
  const topRow = tl.add(tr.sub(tl).mul(fx));
  const bottomRow = bl.add(br.sub(bl).mul(fx));
  return topRow.add(bottomRow.sub(topRow).mul(fy));
}

/** The server's detector (face-detection-retail-0004's convolutions as a TF.js graph) and its
 * SSD decoding (clustered priors, CENTER_SIZE, NMS) as faceid_sdk/face_models.py runs them:
 * boxes [x0, y0, x1, y1] in image pixels with their scores. */
async function detectBoxes(canvas) {
  const w = canvas.width, h = canvas.height;
  const need = 0.85 * Math.max(w, h);
  const size = LIMITS.detectorSizes.find((s) => s >= need) ?? LIMITS.detectorSizes.at(-1);
  // Shrinking averages (the server's cv2.INTER_AREA; the canvas's high-quality smoothing is
  // the closest the browser has); enlarging is bilinear with half-pixel centres (INTER_LINEAR).
  let small = null;
  if (Math.min(w, h) > size) {
    small = document.createElement("canvas");
    small.width = small.height = size;
    const ctx = small.getContext("2d");
    ctx.imageSmoothingQuality = "high";
    ctx.drawImage(canvas, 0, 0, size, size);
  }
  const [loc, conf] = tf.tidy(() => {
    const input = small
      ? tf.browser.fromPixels(small).toFloat().reverse(2)
      : tf.image.resizeBilinear(tf.browser.fromPixels(canvas).toFloat(), [size, size], false,
        true).reverse(2);
    const outs = detectorModel.predict(input.expandDims(0));
    const k = ssd.widths.length;
    // The head with 4 numbers per prior is the box regression, the other the 2 class logits.
    return outs[0].shape[3] === 4 * k ? [outs[0], outs[1]] : [outs[1], outs[0]];
  });
  const [fh, fw] = loc.shape.slice(1, 3);
  const [l, c] = await Promise.all([loc.data(), conf.data()]);
  loc.dispose();
  conf.dispose();
  const k = ssd.widths.length;
  const [v0, v1, v2, v3] = ssd.variance;
  const boxes = [], scores = [];
  for (let i = 0; i < fh; i++) {
    for (let j = 0; j < fw; j++) {
      for (let p = 0; p < k; p++) {
        const n = (i * fw + j) * k + p;
        const a = c[2 * n], b = c[2 * n + 1];
        const score = 1 / (1 + Math.exp(a - b)); // softmax over two classes
        if (score < LIMITS.minScore) continue;
        const pw = ssd.widths[p] / size, ph = ssd.heights[p] / size;
        const cx = ((j + ssd.offset) * ssd.step) / size + l[4 * n] * v0 * pw;
        const cy = ((i + ssd.offset) * ssd.step) / size + l[4 * n + 1] * v1 * ph;
        const bw = Math.exp(l[4 * n + 2] * v2) * pw, bh = Math.exp(l[4 * n + 3] * v3) * ph;
        boxes.push([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2]);
        scores.push(score);
      }
    }
  }
  const kept = nonMaxSuppression(boxes, scores, ssd.nms_threshold, ssd.keep_top_k);
  const clip = (v, m) => Math.min(Math.max(v, 0), 1) * m;
  return kept.map((i) => ({
    box: [clip(boxes[i][0], w), clip(boxes[i][1], h), clip(boxes[i][2], w), clip(boxes[i][3], h)],
    score: scores[i],
  })).filter((d) => d.box[2] - d.box[0] >= 2 && d.box[3] - d.box[1] >= 2);
}

function nonMaxSuppression(boxes, scores, threshold, keep) {
  const order = scores.map((s, i) => i).sort((a, b) => scores[b] - scores[a] || a - b);
  const kept = [];
  for (const i of order) {
    if (kept.length >= keep) break;
    if (kept.every((j) => iou(boxes[i], boxes[j]) <= threshold)) kept.push(i);
  }
  return kept;
}

function iou(a, b) {
  const iw = Math.max(0, Math.min(a[2], b[2]) - Math.max(a[0], b[0]));
  const ih = Math.max(0, Math.min(a[3], b[3]) - Math.max(a[1], b[1]));
  const inter = iw * ih;
  const union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter;
  return union > 0 ? inter / union : 0;
}

/** Every face in *canvas*: box [x, y, width, height], score, the five template points and the
 * eye distance, largest first: the server's detector and landmark model, the server's rules. */
export async function detectFaces(canvas) {
  const faces = [];
  for (const { box: [x0, y0, x1, y1], score } of await detectBoxes(canvas)) {
    // The landmark model reads the box made square around its centre, as on the server.
    const side = Math.max(x1 - x0, y1 - y0);
    const cx = (x0 + x1) / 2, cy = (y0 + y1) / 2;
    const points = await refinePoints(canvas, [cx - side / 2, cy - side / 2, side]);
    faces.push({ box: [x0, y0, x1 - x0, y1 - y0], score, points, eyeDistance: eyeDistance(points) });
  }
  return faces.sort((a, b) => b.box[2] * b.box[3] - a.box[2] * a.box[3]);
}

function pointsOnly(points) {
  const xs = points.map((p) => p[0]), ys = points.map((p) => p[1]);
  const x = Math.min(...xs), y = Math.min(...ys);
  return { box: [x, y, Math.max(...xs) - x, Math.max(...ys) - y], score: 1, points,
    eyeDistance: eyeDistance(points) };
}

function eyeDistance(points) {
  // points: left eye centre, right eye centre, nose tip, mouth corners (align.js order)
  return Math.hypot(points[1][0] - points[0][0], points[1][1] - points[0][1]);
}

/**
 * Run the pipeline on a canvas holding the whole image at its natural size.
 * Resolves to { status, faces, face?, vector?, crop96?, residual?, timings } where status is
 * "ok", "no-face", "several-faces" or "too-small"; only "ok" carries a vector.
 * `options.points`: five points (align.js order) from another detector; skips detection.
 */
async function processImage(model, canvas, { points: given } = {}) {
  const timings = {};
  let t = now();
  const faces = given ? [pointsOnly(given)] : await detectFaces(canvas);
  timings.detect = now() - t;
  // Faces too small to use do not count as "several": a face in the background should not
  // block the person in front of the camera.
  const usable = faces.filter((f) => f.eyeDistance >= LIMITS.minEyeDistance);
  if (faces.length === 0) return { status: "no-face", faces, timings };
  if (usable.length === 0) return { status: "too-small", faces, face: faces[0], timings };
  if (usable.length > 1) return { status: "several-faces", faces: usable, timings };
  const face = usable[0];

  t = now();
  const ctx = canvas.getContext("2d", { willReadFrequently: true });
  const pixels = ctx.getImageData(0, 0, canvas.width, canvas.height);
  timings.readPixels = now() - t;
  t = now();
  const image = { data: pixels.data, width: pixels.width, height: pixels.height, channels: 4 };
  // The points are the landmark model's (or the caller's): the template's own points.
  const { input, crop96, residual } = alignFace(image, face.points, TEMPLATE_112);
  timings.align = now() - t;

  t = now();
  const vector = await embed(model, input, crop96.width);
  timings.embed = now() - t;
  return { status: "ok", faces, face, vector, crop96, residual, timings };
}

/** FFEM-AM on one normalized NHWC input (Float32Array of size*size*3): the unit vector. */
async function embed(model, input, size) {
  const x = tf.tensor4d(input, [1, size, size, 3]);
  const y = model.predict(x);
  const raw = await y.data();
  x.dispose();
  y.dispose();
  return l2normalize(raw);
}

/** Draw a File/Blob (EXIF orientation applied, no colour conversion) on a new canvas. */
export async function canvasFromFile(file) {
  const bitmap = await createImageBitmap(file, {
    imageOrientation: "from-image",
    colorSpaceConversion: "none",
  });
  const canvas = document.createElement("canvas");
  canvas.width = bitmap.width;
  canvas.height = bitmap.height;
  canvas.getContext("2d", { willReadFrequently: true }).drawImage(bitmap, 0, 0);
  bitmap.close();
  return canvas;
}

/** The current frame of a playing <video> on a new canvas. */
export function canvasFromVideo(video) {
  const canvas = document.createElement("canvas");
  canvas.width = video.videoWidth;
  canvas.height = video.videoHeight;
  canvas.getContext("2d", { willReadFrequently: true }).drawImage(video, 0, 0);
  return canvas;
}
