// Face alignment, exactly as faceid_sdk/alignment.py does it on the server:
//
//   five points -> least-squares similarity transform onto TEMPLATE_112 -> 112x112 crop
//   (resample.warp: bilinear, replicated border, a whole-factor block shrink first when the
//   face is more than 2x too big)
//   -> 96x96 by area interpolation -> RGB float32 x / 127.5 - 1, NHWC.
//
// Pure JavaScript over RGBA pixel arrays (what canvas getImageData returns), no browser API,
// so it runs in Node for the tests and ports to a mini-program as is. A test compares every
// constant and function here with the Python module.

import { resizeArea, warp } from "./resample.js";

export const CROP_SIZE = 112;
export const MODEL_INPUT_SIZE = 96;

// The alignment template (faceid_sdk.alignment.TEMPLATE_112): left eye centre, right eye
// centre (image left/right), nose tip, left and right mouth corner, in the 112x112 crop. The
// server's landmark model finds exactly these points.
export const TEMPLATE_112 = [
  [38.2946, 51.6963],
  [73.5318, 51.5014],
  [56.0252, 71.7366],
  [41.5493, 92.3655],
  [70.7299, 92.2041],
];

/**
 * Least-squares similarity transform (rotation, uniform scale, translation; no reflection)
 * mapping src points onto dst: the 2x3 matrix [[a, -b, tx], [b, a, ty]]. In two dimensions
 * this closed form is Umeyama's solution, which alignment.estimate_similarity computes by SVD.
 */
export function estimateSimilarity(src, dst) {
  const n = src.length;
  if (n < 2 || dst.length !== n) throw new Error("src and dst must hold the same n >= 2 points");
  let sx = 0, sy = 0, dx = 0, dy = 0;
  for (let i = 0; i < n; i++) {
    sx += src[i][0]; sy += src[i][1]; dx += dst[i][0]; dy += dst[i][1];
  }
  sx /= n; sy /= n; dx /= n; dy /= n;
  let dot = 0, cross = 0, norm = 0;
  for (let i = 0; i < n; i++) {
    const px = src[i][0] - sx, py = src[i][1] - sy;
    const qx = dst[i][0] - dx, qy = dst[i][1] - dy;
    dot += px * qx + py * qy;
    cross += px * qy - py * qx;
    norm += px * px + py * py;
  }
  if (norm / n <= 1e-12) throw new Error("src points must not all coincide");
  const a = dot / norm, b = cross / norm;
  return [
    [a, -b, dx - (a * sx - b * sy)],
    [b, a, dy - (b * sx + a * sy)],
  ];
}

/** RMS distance (crop pixels) between the mapped points and the template. */
export function residual(m, points, template = TEMPLATE_112) {
  let sum = 0;
  for (let i = 0; i < points.length; i++) {
    const [x, y] = points[i];
    const ex = m[0][0] * x + m[0][1] * y + m[0][2] - template[i][0];
    const ey = m[1][0] * x + m[1][1] * y + m[1][2] - template[i][1];
    sum += ex * ex + ey * ey;
  }
  return Math.sqrt(sum / points.length);
}

/**
 * Warp an image so that `points` land on the template: the 112x112 RGB crop (3 channels) and
 * the RMS residual of the points after the transform (alignment.warp_to_template).
 */
export function warpToTemplate(image, points, template = TEMPLATE_112, size = CROP_SIZE) {
  const tpl = template.map(([x, y]) => [(x * size) / CROP_SIZE, (y * size) / CROP_SIZE]);
  const m = estimateSimilarity(points, tpl);
  const fit = residual(m, points, tpl);
  return { crop: warp(image, m, size), residual: fit };
}

/** 112x112 crop -> 96x96 model input (area interpolation), as alignment.crop_to_model_input. */
export function cropToModelInput(crop) {
  if (crop.width === MODEL_INPUT_SIZE && crop.height === MODEL_INPUT_SIZE) return crop;
  return resizeArea(crop, MODEL_INPUT_SIZE, MODEL_INPUT_SIZE);
}

/** uint8 RGB -> Float32Array x / 127.5 - 1 (NHWC order), as alignment.normalize_pixels. */
export function normalizePixels(image) {
  const channels = image.channels ?? 3;
  const n = image.width * image.height;
  const out = new Float32Array(n * 3);
  for (let i = 0; i < n; i++) {
    for (let k = 0; k < 3; k++) {
      out[i * 3 + k] = Math.fround(Math.fround(image.data[i * channels + k] / 127.5) - 1);
    }
  }
  return out;
}

/** The whole alignment: RGBA image + five points (+ the template they belong on) ->
 * {input (Float32Array), crop96, residual}. */
export function alignFace(image, points, template = TEMPLATE_112) {
  const { crop, residual: fit } = warpToTemplate(image, points, template);
  const crop96 = cropToModelInput(crop);
  return { input: normalizePixels(crop96), crop96, residual: fit };
}
