// Test pictures from the real face photos (tests/fixtures/web): decoded, composed and encoded
// in pure JS (jpeg-js), as a picked photo (a JPEG file) or a camera frame (RGBA).
const fs = require("fs");
const path = require("path");
const jpeg = require("jpeg-js");

/** A JPEG file's RGBA pixels {data: Uint8Array, width, height}. */
function decode(file) {
  const img = jpeg.decode(fs.readFileSync(file), { useTArray: true, formatAsRGBA: true });
  return { data: img.data, width: img.width, height: img.height };
}

function blank(width, height, rgb = [96, 104, 112]) {
  const data = new Uint8Array(width * height * 4);
  for (let i = 0; i < data.length; i += 4) {
    data[i] = rgb[0]; data[i + 1] = rgb[1]; data[i + 2] = rgb[2]; data[i + 3] = 255;
  }
  return { data, width, height };
}

/** `src` pasted into `dst` at (x, y) (clipped). */
function paste(dst, src, x, y) {
  for (let r = 0; r < src.height; r++) {
    const Y = y + r;
    if (Y < 0 || Y >= dst.height) continue;
    for (let c = 0; c < src.width; c++) {
      const X = x + c;
      if (X < 0 || X >= dst.width) continue;
      const s = (r * src.width + c) * 4, d = (Y * dst.width + X) * 4;
      dst.data.set(src.data.subarray(s, s + 4), d);
    }
  }
  return dst;
}

/** Shrunk by an integer factor, averaging each factor x factor block. */
function shrink(img, factor) {
  const width = Math.floor(img.width / factor), height = Math.floor(img.height / factor);
  const out = new Uint8Array(width * height * 4);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      for (let ch = 0; ch < 4; ch++) {
        let sum = 0;
        for (let dy = 0; dy < factor; dy++) {
          for (let dx = 0; dx < factor; dx++) {
            sum += img.data[((y * factor + dy) * img.width + x * factor + dx) * 4 + ch];
          }
        }
        out[(y * width + x) * 4 + ch] = Math.round(sum / (factor * factor));
      }
    }
  }
  return { data: out, width, height };
}

/** Two photos side by side. */
function sideBySide(a, b) {
  const out = blank(a.width + b.width, Math.max(a.height, b.height), [0, 0, 0]);
  paste(out, a, 0, 0);
  return paste(out, b, a.width, 0);
}

/** Written as a JPEG file (what wx.chooseMedia hands back). */
function writeJpeg(img, file, quality = 92) {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(file, jpeg.encode(img, quality).data);
  return file;
}

/** A camera frame as onCameraFrame gives it: {data: ArrayBuffer RGBA, width, height}; the photo
 * centred in a portrait 480x640 frame (frame-size "medium"). */
function cameraFrame(photoFile, width = 480, height = 640) {
  const photo = decode(photoFile);
  const frame = paste(blank(width, height), photo, (width - photo.width) >> 1,
    (height - photo.height) >> 1);
  const buffer = new ArrayBuffer(frame.data.length);
  new Uint8Array(buffer).set(frame.data);
  return { data: buffer, width, height };
}

module.exports = { decode, blank, paste, shrink, sideBySide, writeJpeg, cameraFrame };
