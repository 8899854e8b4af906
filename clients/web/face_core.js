// The device side of faceid-sdk, the server's pipeline step for step (faceid_sdk/face_models.py
// and faceid_sdk/alignment.py), over plain pixel arrays:
//
//   image -> the server's face detector (SSD, decoded here) -> its five-point landmark model
//   -> align (align.js) -> FFEM-AM -> L2-normalized Float32Array.
//
// No browser API and no model loading: the caller hands in TF.js and the three loaded graph
// models, and images as {data, width, height, channels} (RGBA from canvas getImageData or a
// camera frame, or RGB). The web page (pipeline.js) and the WeChat mini-program share this
// module; the pixels the models see are made by resample.js exactly as OpenCV makes them on
// the server, so one photo gives both sides the same points and the same vector.

import { TEMPLATE_112, alignFace, normalizePixels } from "./align.js";
import { l2normalize } from "./codec.js";
import { resizeArea, resizeLinear, warp } from "./resample.js";

/** Refusal thresholds; a face smaller than this is upscaled too much to be recognised well. */
export const LIMITS = {
  minScore: 0.5, // detector confidence (faceid_sdk.alignment.FaceAligner.min_confidence)
  // Pixels between the eye centres (about a third of the face's width); the template has 35
  // in the 112x112 crop, 30 in the 96x96 input, so below 20 the face is upscaled over 1.5x.
  minEyeDistance: 20,
};

// The detector's input side: the smallest of these that is >= DETECTOR_COVERAGE x the photo's
// longer side (faceid_sdk/face_models.py, the same constants).
export const DETECTOR_SIZES = [160, 224, 300];
export const DETECTOR_COVERAGE = 0.5;
export const LANDMARKS_SIZE = 48;

/** The detector input side used for a photo of this size (face_models.detector_size). */
export function detectorSize(width, height) {
  const need = DETECTOR_COVERAGE * Math.max(width, height);
  return DETECTOR_SIZES.find((s) => s >= need) ?? DETECTOR_SIZES.at(-1);
}

/** The photo as the detector sees it: size x size RGB, shrunk by area or enlarged bilinearly
 * (the server's cv2.resize rule). */
export function detectorInput(image) {
  const size = detectorSize(image.width, image.height);
  return Math.min(image.width, image.height) > size
    ? resizeArea(image, size, size)
    : resizeLinear(image, size, size);
}

/** The 48x48 RGB crop the landmark model reads for the square roi [x0, y0, side] (the
 * server's affine crop, resample.warp). */
export function landmarkInput(image, [x0, y0, side]) {
  const scale = LANDMARKS_SIZE / side;
  return warp(image, [[scale, 0, -x0 * scale], [0, scale, -y0 * scale]], LANDMARKS_SIZE);
}

/** RGB uint8 pixels -> the Intel models' input: BGR float 0..255, NHWC. */
function bgrFloats({ data, width, height }) {
  const out = new Float32Array(width * height * 3);
  for (let i = 0; i < out.length; i += 3) {
    out[i] = data[i + 2]; out[i + 1] = data[i + 1]; out[i + 2] = data[i];
  }
  return out;
}

const f32 = Math.fround;

/** SSD decoding of the detector's two heads (clustered priors, CENTER_SIZE boxes, softmax,
 * NMS), as OpenVINO's DetectionOutput does on the server: boxes [x0, y0, x1, y1] normalized. */
export function decodeDetections(loc, conf, [fh, fw], ssd, size, minScore = LIMITS.minScore) {
  const k = ssd.widths.length;
  const [v0, v1, v2, v3] = ssd.variance;
  const boxes = [], scores = [];
  for (let i = 0; i < fh; i++) {
    for (let j = 0; j < fw; j++) {
      for (let p = 0; p < k; p++) {
        const n = (i * fw + j) * k + p;
        // The softmax of two logits in float32, as on the server: a clear face scores exactly
        // 1, and among such ties the first prior wins there and here.
        const score = f32(1 / f32(1 + f32(Math.exp(f32(conf[2 * n] - conf[2 * n + 1])))));
        if (score < minScore) continue;
        const pw = ssd.widths[p] / size, ph = ssd.heights[p] / size;
        const cx = ((j + ssd.offset) * ssd.step) / size + loc[4 * n] * v0 * pw;
        const cy = ((i + ssd.offset) * ssd.step) / size + loc[4 * n + 1] * v1 * ph;
        const bw = Math.exp(loc[4 * n + 2] * v2) * pw, bh = Math.exp(loc[4 * n + 3] * v3) * ph;
        boxes.push([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2]);
        scores.push(score);
      }
    }
  }
  const kept = nonMaxSuppression(boxes, scores, ssd.nms_threshold, ssd.keep_top_k);
  return kept.map((i) => ({ box: boxes[i], score: scores[i] }));
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

function eyeDistance(points) {
  // points: left eye centre, right eye centre, nose tip, mouth corners (align.js order)
  return Math.hypot(points[1][0] - points[0][0], points[1][1] - points[0][1]);
}

function pointsOnly(points) {
  const xs = points.map((p) => p[0]), ys = points.map((p) => p[1]);
  const x = Math.min(...xs), y = Math.min(...ys);
  return { box: [x, y, Math.max(...xs) - x, Math.max(...ys) - y], score: 1, points,
    eyeDistance: eyeDistance(points) };
}

const clock = () => (globalThis.performance?.now ? performance.now() : Date.now());

/**
 * The pipeline over loaded models. `tf`: the TF.js namespace; `detector`, `landmarks`,
 * `embedder`: graph models (the detector's model.json carries its SSD settings, the
 * embedder's its faceid metadata: model_id, dim, input_size).
 */
export function createFacePipeline({ tf, detector, landmarks, embedder }) {
  const metadata = embedder.metadata?.faceid ?? {};
  if (!metadata.model_id) {
    throw new Error("the FFEM-AM model.json carries no faceid metadata: re-run prepare.py");
  }
  const ssd = detector.metadata?.faceid?.ssd;
  if (!ssd) throw new Error("the detector's model.json carries no SSD settings: re-run prepare.py");
  const inputSize = Number(metadata.input_size ?? 96);

  async function run(model, input, shape) {
    const x = tf.tensor(input, shape);
    const y = model.predict(x);
    const outs = Array.isArray(y) ? y : [y];
    const values = await Promise.all(outs.map((t) => t.data()));
    const shapes = outs.map((t) => t.shape);
    x.dispose();
    outs.forEach((t) => t.dispose());
    return { values, shapes };
  }

  /** Boxes [x0, y0, x1, y1] in image pixels, with scores, as face_models.detect finds them. */
  async function detectBoxes(image, timings = {}) {
    let t = clock();
    const small = detectorInput(image);
    const size = small.width;
    const input = bgrFloats(small);
    timings.detectorInput = clock() - t;
    t = clock();
    const { values, shapes } = await run(detector, input, [1, size, size, 3]);
    timings.detector = clock() - t;
    // The head with 4 numbers per prior is the box regression, the other the class logits.
    const k = ssd.widths.length;
    const [l, c] = shapes[0][3] === 4 * k ? [0, 1] : [1, 0];
    const clip = (v, m) => Math.min(Math.max(v, 0), 1) * m;
    const { width: w, height: h } = image;
    return decodeDetections(values[l], values[c], shapes[l].slice(1, 3), ssd, size)
      .map(({ box, score }) => ({
        box: [clip(box[0], w), clip(box[1], h), clip(box[2], w), clip(box[3], h)], score,
      }))
      .filter((d) => d.box[2] - d.box[0] >= 2 && d.box[3] - d.box[1] >= 2);
  }

  /** The five template points in the square roi [x0, y0, side], in image pixels. */
  async function findPoints(image, roi) {
    const crop = landmarkInput(image, roi);
    const { values: [v] } = await run(landmarks, bgrFloats(crop),
      [1, LANDMARKS_SIZE, LANDMARKS_SIZE, 3]);
    const [x0, y0, side] = roi;
    const points = [];
    for (let i = 0; i < 5; i++) points.push([x0 + v[2 * i] * side, y0 + v[2 * i + 1] * side]);
    return points;
  }

  /** Every face: box [x, y, width, height], score, the five template points and the eye
   * distance, largest first: the server's detector and landmark model, the server's rules. */
  async function detectFaces(image, timings = {}) {
    const faces = [];
    const boxes = await detectBoxes(image, timings);
    const t = clock();
    for (const { box: [x0, y0, x1, y1], score } of boxes) {
      // The landmark model reads the box made square around its centre, as on the server.
      const side = Math.max(x1 - x0, y1 - y0);
      const cx = (x0 + x1) / 2, cy = (y0 + y1) / 2;
      const points = await findPoints(image, [cx - side / 2, cy - side / 2, side]);
      faces.push({ box: [x0, y0, x1 - x0, y1 - y0], score, points,
        eyeDistance: eyeDistance(points) });
    }
    timings.landmarks = clock() - t;
    return faces.sort((a, b) => b.box[2] * b.box[3] - a.box[2] * a.box[3]);
  }

  /** FFEM-AM on one normalized NHWC input (Float32Array): the unit vector. */
  async function embed(input, size = inputSize) {
    const { values: [raw] } = await run(embedder, input, [1, size, size, 3]);
    return l2normalize(raw);
  }

  /**
   * The whole pipeline on one image. Resolves to {status, faces, face?, vector?, crop96?,
   * residual?, timings}; status is "ok", "no-face", "several-faces" or "too-small", and only
   * "ok" carries a vector. `points`: five points (align.js order) found elsewhere; skips
   * detection.
   */
  async function process(image, { points: given } = {}) {
    const timings = {};
    let t = clock();
    const faces = given ? [pointsOnly(given)] : await detectFaces(image, timings);
    timings.detect = clock() - t;
    // Faces too small to use do not count as "several": a face in the background should not
    // block the person in front of the camera.
    const usable = faces.filter((f) => f.eyeDistance >= LIMITS.minEyeDistance);
    if (faces.length === 0) return { status: "no-face", faces, timings };
    if (usable.length === 0) return { status: "too-small", faces, face: faces[0], timings };
    if (usable.length > 1) return { status: "several-faces", faces: usable, timings };
    const face = usable[0];
    t = clock();
    // The points are the landmark model's (or the caller's): the template's own points.
    const { input, crop96, residual } = alignFace(image, face.points, TEMPLATE_112);
    timings.align = clock() - t;
    t = clock();
    const vector = await embed(input, crop96.width);
    timings.embed = clock() - t;
    return { status: "ok", faces, face, vector, crop96, residual, timings };
  }

  /** First runs allocate (wasm) or compile kernels (webgl): pay that at load, not on a user. */
  async function warmUp() {
    const blank = { data: new Uint8ClampedArray(64 * 64 * 3), width: 64, height: 64, channels: 3 };
    await detectFaces(blank);
    await run(landmarks, new Float32Array(LANDMARKS_SIZE * LANDMARKS_SIZE * 3),
      [1, LANDMARKS_SIZE, LANDMARKS_SIZE, 3]);
    await embed(new Float32Array(inputSize * inputSize * 3));
  }

  return {
    modelId: metadata.model_id,
    dim: Number(metadata.dim),
    metadata,
    detectFaces,
    process,
    warmUp,
    /** Embed an aligned 96x96 RGB face ({data, width, height, channels}) as it is. */
    embedAligned: (crop) => embed(normalizePixels(crop), crop.width),
  };
}
