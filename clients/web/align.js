// Face alignment, exactly as faceid_sdk/alignment.py does it on the server:
//
//   five points -> least-squares similarity transform onto TEMPLATE_112 -> 112x112 crop
//   (bilinear, replicated border; area pre-shrink when the face is more than 2x too big)
//   -> 96x96 by area interpolation -> RGB float32 x / 127.5 - 1, NHWC.
//
// Pure JavaScript over RGBA pixel arrays (what canvas getImageData returns), no browser API,
// so it runs in Node for the tests and ports to a mini-program as is. A test compares every
// constant and function here with the Python module.

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
 * Area-interpolated downscale of an RGB(A) image (OpenCV's INTER_AREA for shrinking): each
 * output pixel is the mean of the source area it covers, partial pixels weighted by coverage.
 * image: {data, width, height, channels}. Returns an RGB image with 3 channels.
 */
export function resizeArea(image, outWidth, outHeight) {
  const { data, width, height } = image;
  const channels = image.channels ?? 4;
  const xs = areaTable(width, outWidth);
  const ys = areaTable(height, outHeight);
  // Rows first into a float buffer (outWidth x height), then columns.
  const rows = new Float32Array(outWidth * height * 3);
  for (let y = 0; y < height; y++) {
    const line = y * width * channels;
    for (let ox = 0; ox < outWidth; ox++) {
      let r = 0, g = 0, b = 0;
      for (const [sx, w] of xs[ox]) {
        const p = line + sx * channels;
        r += w * data[p]; g += w * data[p + 1]; b += w * data[p + 2];
      }
      const o = (y * outWidth + ox) * 3;
      rows[o] = r; rows[o + 1] = g; rows[o + 2] = b;
    }
  }
  const out = new Uint8ClampedArray(outWidth * outHeight * 3);
  for (let oy = 0; oy < outHeight; oy++) {
    for (let ox = 0; ox < outWidth; ox++) {
      let r = 0, g = 0, b = 0;
      for (const [sy, w] of ys[oy]) {
        const p = (sy * outWidth + ox) * 3;
        r += w * rows[p]; g += w * rows[p + 1]; b += w * rows[p + 2];
      }
      const o = (oy * outWidth + ox) * 3;
      out[o] = roundEven(r); out[o + 1] = roundEven(g); out[o + 2] = roundEven(b);
    }
  }
  return { data: out, width: outWidth, height: outHeight, channels: 3 };
}

// For each output index, the [source index, weight] pairs covering it (weights sum to 1).
function areaTable(size, outSize) {
  const scale = size / outSize;
  const table = [];
  for (let o = 0; o < outSize; o++) {
    const start = o * scale;
    const end = Math.min(start + scale, size);
    const cell = end - start;
    const taps = [];
    for (let s = Math.floor(start); s < end; s++) {
      const w = Math.min(s + 1, end) - Math.max(s, start);
      if (w > 1e-9) taps.push([s, w / cell]);
    }
    table.push(taps);
  }
  return table;
}

function roundEven(x) {
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/**
 * Warp an image so that `points` land on the template: the 112x112 RGB crop (3 channels) and
 * the RMS residual of the points after the transform (alignment.warp_to_template).
 */
export function warpToTemplate(image, points, template = TEMPLATE_112, size = CROP_SIZE) {
  const tpl = template.map(([x, y]) => [(x * size) / CROP_SIZE, (y * size) / CROP_SIZE]);
  let m = estimateSimilarity(points, tpl);
  const fit = residual(m, points, tpl);
  let src = image;
  const scale = Math.sqrt(Math.abs(m[0][0] * m[1][1] - m[0][1] * m[1][0]));
  if (scale < 0.5) {
    // Shrinking a big photo with bilinear sampling aliases; pre-shrink with area averaging
    // so the crop looks like the (area-resized) training crops.
    const f = 1 / (2 * scale);
    const w = Math.max(1, pyRound(image.width / f));
    const h = Math.max(1, pyRound(image.height / f));
    src = resizeArea(image, w, h);
    m = [
      [m[0][0] * f, m[0][1] * f, m[0][2]],
      [m[1][0] * f, m[1][1] * f, m[1][2]],
    ];
  }
  return { crop: warpAffine(src, m, size), residual: fit };
}

// Python's round(): halves to even.
function pyRound(x) {
  return roundEven(x);
}

/** cv2.warpAffine(src, m, (size, size), INTER_LINEAR, BORDER_REPLICATE) for RGB output. */
export function warpAffine(image, m, size) {
  const { data, width, height } = image;
  const channels = image.channels ?? 4;
  // Invert the 2x3 similarity: dst = A src + t  =>  src = A^-1 (dst - t).
  const [[a, b, tx], [c, d, ty]] = m;
  const det = a * d - b * c;
  const ia = d / det, ib = -b / det, ic = -c / det, id = a / det;
  const out = new Uint8ClampedArray(size * size * 3);
  const clampX = (x) => (x < 0 ? 0 : x > width - 1 ? width - 1 : x);
  const clampY = (y) => (y < 0 ? 0 : y > height - 1 ? height - 1 : y);
  for (let y = 0; y < size; y++) {
    for (let x = 0; x < size; x++) {
      const u = x - tx, v = y - ty;
      const sx = ia * u + ib * v;
      const sy = ic * u + id * v;
      const x0 = Math.floor(sx), y0 = Math.floor(sy);
      const fx = sx - x0, fy = sy - y0;
      const xa = clampX(x0), xb = clampX(x0 + 1), ya = clampY(y0), yb = clampY(y0 + 1);
      const p00 = (ya * width + xa) * channels, p01 = (ya * width + xb) * channels;
      const p10 = (yb * width + xa) * channels, p11 = (yb * width + xb) * channels;
      const w00 = (1 - fx) * (1 - fy), w01 = fx * (1 - fy), w10 = (1 - fx) * fy, w11 = fx * fy;
      const o = (y * size + x) * 3;
      for (let k = 0; k < 3; k++) {
        out[o + k] = Math.round(
          w00 * data[p00 + k] + w01 * data[p01 + k] + w10 * data[p10 + k] + w11 * data[p11 + k]);
      }
    }
  }
  return { data: out, width: size, height: size, channels: 3 };
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
