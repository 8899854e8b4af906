// The three resamplings the server's pipeline makes with OpenCV, reproduced over plain pixel
// arrays so that a photo gives the browser the same pixels it gives the server:
//
//   resizeArea    cv2.resize(..., INTER_AREA) when shrinking (detector input, pre-shrinks)
//   resizeLinear  cv2.resize(..., INTER_LINEAR) when enlarging (detector input of small photos)
//   warpAffine    cv2.warpAffine(..., INTER_LINEAR, BORDER_REPLICATE) (landmark crop, alignment)
//
// Images are {data, width, height, channels} with channels 3 (RGB) or 4 (RGBA, as canvas
// getImageData returns); every function returns RGB (3 channels, Uint8ClampedArray). No browser
// API: this runs in Node for the tests (tests/browser/test_resample_js.py compares each with
// OpenCV, pixel for pixel) and in a mini-program as it is.

/** Python's round() and OpenCV's cvRound: halves go to the even neighbour. */
export function roundEven(x) {
  const r = Math.round(x);
  return r - x === 0.5 && (r & 1) !== 0 ? r - 1 : r;
}

/**
 * Area-interpolated shrink (OpenCV's INTER_AREA): each output pixel is the mean of the source
 * area it covers, partial pixels weighted by coverage. An exact halving takes OpenCV's integer
 * path ((a + b + c + d + 2) >> 2).
 */
export function resizeArea(image, outWidth, outHeight) {
  const { data, width, height } = image;
  const channels = image.channels ?? 4;
  if (outWidth * 2 === width && outHeight * 2 === height) return halve(image);
  const xs = areaTable(width, outWidth);
  const ys = areaTable(height, outHeight);
  // Rows first into a float buffer (outWidth x height), then columns.
  const rows = new Float64Array(outWidth * height * 3);
  for (let y = 0; y < height; y++) {
    const line = y * width * channels;
    let o = y * outWidth * 3;
    for (let ox = 0; ox < outWidth; ox++, o += 3) {
      let r = 0, g = 0, b = 0;
      for (let t = xs.first[ox], end = xs.first[ox + 1]; t < end; t++) {
        const p = line + xs.index[t] * channels, w = xs.weight[t];
        r += w * data[p]; g += w * data[p + 1]; b += w * data[p + 2];
      }
      rows[o] = r; rows[o + 1] = g; rows[o + 2] = b;
    }
  }
  const out = new Uint8ClampedArray(outWidth * outHeight * 3);
  const stride = outWidth * 3;
  const sums = new Float64Array(stride);
  for (let oy = 0; oy < outHeight; oy++) {
    sums.fill(0);
    for (let t = ys.first[oy], end = ys.first[oy + 1]; t < end; t++) {
      const p = ys.index[t] * stride, w = ys.weight[t];
      for (let i = 0; i < stride; i++) sums[i] += w * rows[p + i];
    }
    const o = oy * stride;
    for (let i = 0; i < stride; i++) out[o + i] = roundEven(sums[i]);
  }
  return { data: out, width: outWidth, height: outHeight, channels: 3 };
}

function halve(image) {
  const { data, width } = image;
  const channels = image.channels ?? 4;
  const w = width / 2, h = image.height / 2;
  const out = new Uint8ClampedArray(w * h * 3);
  for (let y = 0; y < h; y++) {
    const top = 2 * y * width * channels, bottom = top + width * channels;
    for (let x = 0; x < w; x++) {
      const a = top + 2 * x * channels, b = bottom + 2 * x * channels;
      const o = (y * w + x) * 3;
      for (let k = 0; k < 3; k++) {
        out[o + k] = (data[a + k] + data[a + channels + k] + data[b + k] + data[b + channels + k] + 2) >> 2;
      }
    }
  }
  return { data: out, width: w, height: h, channels: 3 };
}

// For each output index o, the source indices and weights covering it (weights sum to 1):
// taps first[o] .. first[o + 1] - 1 of index and weight.
function areaTable(size, outSize) {
  const scale = size / outSize;
  const first = new Int32Array(outSize + 1);
  const index = [], weight = [];
  for (let o = 0; o < outSize; o++) {
    first[o] = index.length;
    const start = o * scale;
    const end = Math.min(start + scale, size);
    const cell = end - start;
    for (let s = Math.floor(start); s < end; s++) {
      const w = Math.min(s + 1, end) - Math.max(s, start);
      if (w > 1e-9) { index.push(s); weight.push(w / cell); }
    }
  }
  first[outSize] = index.length;
  return { first, index: Int32Array.from(index), weight: Float64Array.from(weight) };
}

/**
 * Bilinear resize with half-pixel centres (OpenCV's INTER_LINEAR for 8-bit images, in its
 * fixed-point arithmetic: 11-bit weights, the vertical pass rounded as its SIMD path does).
 */
export function resizeLinear(image, outWidth, outHeight) {
  const { data, width, height } = image;
  const channels = image.channels ?? 4;
  const xs = linearTable(width, outWidth);
  const ys = linearTable(height, outHeight);
  // Horizontal pass for every source row (integers, weights scaled by 2^11).
  const rows = new Int32Array(outWidth * height * 3);
  for (let y = 0; y < height; y++) {
    const line = y * width * channels;
    for (let ox = 0; ox < outWidth; ox++) {
      const [s0, s1, a0, a1] = xs[ox];
      const p = line + s0 * channels, q = line + s1 * channels;
      const o = (y * outWidth + ox) * 3;
      for (let k = 0; k < 3; k++) rows[o + k] = data[p + k] * a0 + data[q + k] * a1;
    }
  }
  const out = new Uint8ClampedArray(outWidth * outHeight * 3);
  for (let oy = 0; oy < outHeight; oy++) {
    const [r0, r1, b0, b1] = ys[oy];
    const p = r0 * outWidth * 3, q = r1 * outWidth * 3, o = oy * outWidth * 3;
    for (let i = 0; i < outWidth * 3; i++) {
      // ((b0 * (s0 >> 4)) >> 16) + ((b1 * (s1 >> 4)) >> 16) + 2) >> 2, as OpenCV's SIMD pass
      out[o + i] = ((((b0 * (rows[p + i] >> 4)) >> 16) + ((b1 * (rows[q + i] >> 4)) >> 16) + 2)
        >> 2);
    }
  }
  return { data: out, width: outWidth, height: outHeight, channels: 3 };
}

function linearTable(size, outSize) {
  const scale = size / outSize;
  const table = [];
  for (let o = 0; o < outSize; o++) {
    let f = (o + 0.5) * scale - 0.5;
    let s = Math.floor(f);
    f -= s;
    if (s < 0) { s = 0; f = 0; }
    if (s >= size - 1) { s = size - 1; f = 0; }
    const a1 = roundEven(f * 2048);
    table.push([s, Math.min(s + 1, size - 1), 2048 - a1, a1]);
  }
  return table;
}

/**
 * cv2.warpAffine(image, m, (size, size), INTER_LINEAR, BORDER_REPLICATE): m is the 2x3
 * forward transform (image -> output). As OpenCV (4.11 and later) computes it: the inverse in
 * double precision, then source coordinates and the interpolation in float32.
 */
export function warpAffine(image, m, size) {
  const { data, width, height } = image;
  const channels = image.channels ?? 4;
  const f = Math.fround;
  const [[a, b, tx], [c, d, ty]] = m;
  const det = a * d - b * c;
  const inv = det !== 0 ? 1 / det : 0;
  const i00 = f(d * inv), i01 = f(-b * inv), i10 = f(-c * inv), i11 = f(a * inv);
  const i02 = f(-(d * inv) * tx - (-b * inv) * ty), i12 = f(-(-c * inv) * tx - (a * inv) * ty);
  const out = new Uint8ClampedArray(size * size * 3);
  const clampX = (x) => (x < 0 ? 0 : x > width - 1 ? width - 1 : x);
  const clampY = (y) => (y < 0 ? 0 : y > height - 1 ? height - 1 : y);
  for (let y = 0; y < size; y++) {
    const rowX = f(f(y * i01) + i02), rowY = f(f(y * i11) + i12);
    for (let x = 0; x < size; x++) {
      const sx = f(f(x * i00) + rowX), sy = f(f(x * i10) + rowY);
      const x0 = Math.floor(sx), y0 = Math.floor(sy);
      const fx = f(sx - x0), fy = f(sy - y0);
      const xa = clampX(x0), xb = clampX(x0 + 1), ya = clampY(y0), yb = clampY(y0 + 1);
      const p00 = (ya * width + xa) * channels, p01 = (ya * width + xb) * channels;
      const p10 = (yb * width + xa) * channels, p11 = (yb * width + xb) * channels;
      const o = (y * size + x) * 3;
      for (let k = 0; k < 3; k++) {
        const top = f(data[p00 + k] + f(fx * (data[p01 + k] - data[p00 + k])));
        const bottom = f(data[p10 + k] + f(fx * (data[p11 + k] - data[p10 + k])));
        out[o + k] = roundEven(f(top + f(fy * f(bottom - top))));
      }
    }
  }
  return { data: out, width: size, height: size, channels: 3 };
}

/**
 * The affine crop every step of the pipeline makes (faceid_sdk/resample.py, the same rule): a
 * transform that shrinks over 2x first takes the k x k block means (k = floor(1 / scale),
 * blocks anchored at the image's corner, rounded half up), then warpAffine. A whole factor
 * keeps the pixels a continuous function of the transform, so a box a hair off gives the same
 * crop rather than one from a differently rounded pre-shrink.
 */
export function warp(image, m, size) {
  const k = shrinkFactor(m);
  if (k === 1) return warpAffine(image, m, size);
  const { width, height } = image;
  const nx = Math.floor(width / k), ny = Math.floor(height / k);
  if (nx < 1 || ny < 1) return warpAffine(image, m, size);
  const [[a, b, tx], [c, d, ty]] = m;
  const det = a * d - b * c;
  // Source points of the crop's corners: the blocks the bilinear taps can reach, with a margin.
  const xs = [], ys = [];
  for (const [u, v] of [[0, 0], [size - 1, 0], [0, size - 1], [size - 1, size - 1]]) {
    xs.push((d * (u - tx) - b * (v - ty)) / det);
    ys.push((-c * (u - tx) + a * (v - ty)) / det);
  }
  const bx0 = Math.min(Math.max(Math.floor(Math.min(...xs) / k) - 2, 0), nx - 1);
  const by0 = Math.min(Math.max(Math.floor(Math.min(...ys) / k) - 2, 0), ny - 1);
  const bx1 = Math.max(Math.min(Math.ceil(Math.max(...xs) / k) + 3, nx), bx0 + 1);
  const by1 = Math.max(Math.min(Math.ceil(Math.max(...ys) / k) + 3, ny), by0 + 1);
  const shrunk = blockMeans(image, k, bx0, by0, bx1 - bx0, by1 - by0);
  // Block (i, j) is centred on image pixel ((bx0 + j) k + (k - 1) / 2, (by0 + i) k + ...).
  const ox = bx0 * k + (k - 1) / 2, oy = by0 * k + (k - 1) / 2;
  return warpAffine(shrunk, [
    [a * k, b * k, tx + a * ox + b * oy],
    [c * k, d * k, ty + c * ox + d * oy],
  ], size);
}

/** faceid_sdk.resample.shrink_factor: 1, or floor(1 / scale) when m shrinks over 2x. */
export function shrinkFactor(m) {
  const scale = Math.sqrt(Math.abs(m[0][0] * m[1][1] - m[0][1] * m[1][0]));
  if (!(scale > 0)) throw new Error("the transform must not be singular");
  return scale < 0.5 ? Math.max(1, Math.floor(1 / scale)) : 1;
}

function blockMeans(image, k, bx0, by0, nx, ny) {
  const { data, width } = image;
  const channels = image.channels ?? 4;
  const out = new Uint8ClampedArray(nx * ny * 3);
  const area = k * k, half = Math.floor(area / 2);
  for (let i = 0; i < ny; i++) {
    for (let j = 0; j < nx; j++) {
      let r = 0, g = 0, b = 0;
      for (let y = (by0 + i) * k, ye = y + k; y < ye; y++) {
        let p = (y * width + (bx0 + j) * k) * channels;
        for (let x = 0; x < k; x++, p += channels) {
          r += data[p]; g += data[p + 1]; b += data[p + 2];
        }
      }
      const o = (i * nx + j) * 3;
      out[o] = Math.floor((r + half) / area);
      out[o + 1] = Math.floor((g + half) / area);
      out[o + 2] = Math.floor((b + half) / area);
    }
  }
  return { data: out, width: nx, height: ny, channels: 3 };
}
