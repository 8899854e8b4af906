// @ts-check
// Pixels for face_core.js ({data, width, height, channels}) from the mini-program's two
// sources: a camera frame (CameraContext.onCameraFrame: RGBA, already at hand) and a picked
// photo (wx.chooseMedia -> a temp file, drawn on an offscreen 2d canvas and read back).
// Nothing here leaves the phone.

/** The photo is not an image the runtime can decode. */
export class NotImageError extends Error {
  constructor(path, why) {
    super(`${path} is not an image this phone can read (${why})`);
    this.name = "NotImageError";
    this.code = "not-image";
  }
}

/** A camera frame ({data: ArrayBuffer RGBA, width, height}) as pipeline pixels. The runtime
 * reuses the frame's buffer for the next frame, so the bytes are copied. */
export function imageFromFrame(frame) {
  const data = new Uint8ClampedArray(frame.data.slice(0));
  if (data.length !== frame.width * frame.height * 4) {
    throw new Error(`camera frame of ${data.length} bytes is not ${frame.width}x${frame.height} RGBA`);
  }
  return { data, width: frame.width, height: frame.height, channels: 4 };
}

/** The rotation that shows an image upright, from wx.getImageInfo's `orientation`. */
const ORIENTATIONS = {
  up: [0, false], "up-mirrored": [0, true], down: [180, false], "down-mirrored": [180, true],
  left: [270, false], "left-mirrored": [270, true], right: [90, false], "right-mirrored": [90, true],
};

/** RGBA pixels turned upright: rotated clockwise by `degrees` (0/90/180/270), mirrored first
 * when `mirror` (EXIF orientations 2-8). */
export function orient(image, orientation = "up") {
  const [degrees, mirror] = ORIENTATIONS[orientation] ?? [0, false];
  if (!degrees && !mirror) return image;
  const { data, width: w, height: h } = image;
  const swap = degrees === 90 || degrees === 270;
  const W = swap ? h : w, H = swap ? w : h;
  const out = new Uint8ClampedArray(W * H * 4);
  for (let y = 0; y < h; y++) {
    for (let x0 = 0; x0 < w; x0++) {
      const x = mirror ? w - 1 - x0 : x0;
      let X, Y;
      if (degrees === 0) { X = x; Y = y; }
      else if (degrees === 90) { X = h - 1 - y; Y = x; }
      else if (degrees === 180) { X = w - 1 - x; Y = h - 1 - y; }
      else { X = y; Y = w - 1 - x; }
      const s = (y * w + x0) * 4, d = (Y * W + X) * 4;
      out[d] = data[s]; out[d + 1] = data[s + 1]; out[d + 2] = data[s + 2]; out[d + 3] = data[s + 3];
    }
  }
  return { data: out, width: W, height: H, channels: 4 };
}

function promisify(api, options) {
  return new Promise((resolve, reject) => api({ ...options, success: resolve, fail: reject }));
}

/**
 * A picked photo's pixels, upright, its longer side at most `maxSide` (a phone photo of
 * 4000x3000 would take 48 MB as RGBA; the detector reads at most 300x300 and a face that is
 * recognisable stays far above the 20 px eye distance). Resolves to {image, width, height,
 * orientation, scale}; rejects with NotImageError.
 */
export async function readPhoto(path, { maxSide = 1280, api = wx } = {}) {
  let info;
  try {
    info = await promisify(api.getImageInfo, { src: path });
  } catch (error) {
    throw new NotImageError(path, error?.errMsg ?? String(error));
  }
  const scale = Math.min(1, maxSide / Math.max(info.width, info.height));
  const width = Math.max(1, Math.round(info.width * scale));
  const height = Math.max(1, Math.round(info.height * scale));
  const canvas = api.createOffscreenCanvas({ type: "2d", width, height });
  const img = canvas.createImage();
  await new Promise((resolve, reject) => {
    img.onload = resolve;
    img.onerror = (e) => reject(new NotImageError(path, e?.errMsg ?? "decode failed"));
    img.src = path;
  });
  const ctx = canvas.getContext("2d");
  ctx.drawImage(img, 0, 0, width, height);
  const pixels = ctx.getImageData(0, 0, width, height);
  const image = orient({ data: pixels.data, width, height, channels: 4 }, info.orientation);
  return { image, width: image.width, height: image.height, orientation: info.orientation ?? "up", scale };
}
