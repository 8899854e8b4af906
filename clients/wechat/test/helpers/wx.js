// The wx APIs the mini-program uses, behind miniprogram-simulate's stubs, made to behave:
//   request       forwarded to the real server over loopback; every call is captured with the
//                 exact bytes sent
//   downloadFile  real GETs into the user file system; captured
//   uploadFile    refused and captured (the mini-program must never call it)
//   getFileSystemManager  the user file system (wx.env.USER_DATA_PATH = wxfile://usr) on a
//                 temporary folder
//   chooseMedia   hands back the photos a test queued ("the person picks them")
//   getImageInfo, createOffscreenCanvas  decode JPEG files (jpeg-js) and read pixels back
//   createCameraContext  onCameraFrame delivers the frames a test queued
//   get/setStorageSync   a Map
const fs = require("fs");
const http = require("http");
const os = require("os");
const path = require("path");
const jpeg = require("jpeg-js");

const USER = "wxfile://usr";

function wxError(api, message) {
  const error = new Error(`${api}:fail ${message}`);
  error.errMsg = error.message;
  return error;
}

/** Call options.success / fail / complete as wx does (asynchronously). */
function settle(options, error, result) {
  setTimeout(() => {
    if (error) options.fail?.({ errMsg: error.errMsg ?? String(error) });
    else options.success?.(result);
    options.complete?.(error ? { errMsg: error.errMsg } : result);
  }, 0);
}

function toArrayBuffer(buffer) {
  const out = new ArrayBuffer(buffer.length);
  new Uint8Array(out).set(buffer);
  return out;
}

class World {
  constructor() {
    this.root = fs.mkdtempSync(path.join(os.tmpdir(), "wx-user-"));
    this.requests = [];
    this.downloads = [];
    this.uploads = [];
    this.picks = [];
    this.frames = [];
    this.storage = new Map();
    this.cameraFails = false;
  }

  /** A wx path (wxfile://usr/...) or a temp file path as a real path. */
  real(p) {
    if (p.startsWith(USER)) {
      const rel = p.slice(USER.length).replace(/^\/+/, "");
      const out = path.resolve(this.root, rel);
      if (out !== this.root && !out.startsWith(this.root + path.sep)) {
        throw wxError("fs", `permission denied, ${p}`);
      }
      return out;
    }
    return p; // temp files (picked photos) are real paths already
  }

  fsManager() {
    const world = this;
    const wrap = (api, fn) => (...args) => {
      try {
        return fn(...args);
      } catch (error) {
        throw error.errMsg ? error : wxError(api, `${error.code ?? ""} ${error.message}`);
      }
    };
    return {
      accessSync: wrap("accessSync", (p) => {
        if (!fs.existsSync(world.real(p))) throw wxError("accessSync", `no such file or directory ${p}`);
      }),
      mkdirSync: wrap("mkdirSync", (p, recursive) => fs.mkdirSync(world.real(p), { recursive: !!recursive })),
      rmdirSync: wrap("rmdirSync", (p, recursive) => (recursive
        ? fs.rmSync(world.real(p), { recursive: true }) : fs.rmdirSync(world.real(p)))),
      readdirSync: wrap("readdirSync", (p) => fs.readdirSync(world.real(p))),
      readFileSync: wrap("readFileSync", (p, encoding) => (encoding
        ? fs.readFileSync(world.real(p), encoding) : toArrayBuffer(fs.readFileSync(world.real(p))))),
      writeFileSync: wrap("writeFileSync", (p, data, encoding) => fs.writeFileSync(world.real(p),
        typeof data === "string" ? data : Buffer.from(data), encoding)),
      unlinkSync: wrap("unlinkSync", (p) => fs.unlinkSync(world.real(p))),
      renameSync: wrap("renameSync", (a, b) => fs.renameSync(world.real(a), world.real(b))),
      statSync: wrap("statSync", (p) => {
        const s = fs.statSync(world.real(p));
        return { size: s.size, isDirectory: () => s.isDirectory(), isFile: () => s.isFile() };
      }),
    };
  }

  request(options) {
    const record = { url: options.url, method: options.method ?? "GET",
      header: { ...(options.header ?? {}) }, data: options.data, dataType: options.dataType,
      responseType: options.responseType, body: null, status: null, response: null };
    this.requests.push(record);
    // What wx sends: a string as it is, an object as JSON (for application/json).
    let body = null;
    if (options.data !== undefined && options.data !== null) {
      body = Buffer.from(typeof options.data === "string" ? options.data
        : options.data instanceof ArrayBuffer ? new Uint8Array(options.data)
          : JSON.stringify(options.data));
    }
    record.body = body;
    const headers = { ...record.header };
    if (body || record.method !== "GET") headers["Content-Length"] = body ? body.length : 0;
    // A connection per request: no stale keep-alive socket between tests.
    const req = http.request(options.url, { method: record.method, headers, agent: false }, (res) => {
      const chunks = [];
      res.on("data", (c) => chunks.push(c));
      res.on("end", () => {
        const text = Buffer.concat(chunks).toString("utf8");
        record.status = res.statusCode;
        record.response = text;
        let data = text;
        if (options.dataType === "json" || options.dataType === undefined) {
          try { data = JSON.parse(text); } catch { /* left as text, as wx does */ }
        }
        settle(options, null, { statusCode: res.statusCode, data, header: res.headers });
      });
    });
    req.on("error", (e) => settle(options, wxError("request", e.message)));
    if (body) req.write(body);
    req.end();
    return { abort: () => req.destroy() };
  }

  downloadFile(options) {
    const record = { url: options.url, filePath: options.filePath, status: null, bytes: 0 };
    this.downloads.push(record);
    const target = options.filePath
      ? this.real(options.filePath)
      : path.join(this.root, "tmp", `download-${this.downloads.length}`);
    const req = http.get(options.url, { agent: false }, (res) => {
      const chunks = [];
      res.on("data", (c) => chunks.push(c));
      res.on("end", () => {
        const data = Buffer.concat(chunks);
        record.status = res.statusCode;
        record.bytes = data.length;
        try {
          fs.mkdirSync(path.dirname(target), { recursive: true });
          fs.writeFileSync(target, data); // wx saves whatever came, 404 pages included
        } catch (e) {
          settle(options, wxError("downloadFile", e.message));
          return;
        }
        settle(options, null, { statusCode: res.statusCode,
          ...(options.filePath ? { filePath: options.filePath } : { tempFilePath: target }) });
      });
    });
    req.on("error", (e) => settle(options, wxError("downloadFile", e.message)));
    return { abort: () => req.destroy(), onProgressUpdate() {} };
  }

  imageInfo(src) {
    const bytes = fs.readFileSync(src);
    const img = jpeg.decode(bytes, { useTArray: true, formatAsRGBA: true });
    return { img, info: { width: img.width, height: img.height, orientation: "up", type: "jpeg",
      path: src } };
  }

  offscreenCanvas({ width, height }) {
    const world = this;
    const pixels = new Uint8ClampedArray(width * height * 4);
    return {
      width, height,
      createImage() {
        const image = { width: 0, height: 0, onload: null, onerror: null, _img: null };
        Object.defineProperty(image, "src", {
          set(src) {
            setTimeout(() => {
              try {
                const { img } = world.imageInfo(src);
                Object.assign(image, { _img: img, width: img.width, height: img.height });
                image.onload?.();
              } catch (e) {
                image.onerror?.({ errMsg: `image decode failed: ${e.message}` });
              }
            }, 0);
          },
        });
        return image;
      },
      getContext() {
        return {
          // Nearest-neighbour scaling (the tests' photos are drawn at their own size).
          drawImage(image, dx, dy, dw = image.width, dh = image.height) {
            const src = image._img;
            for (let y = 0; y < dh; y++) {
              for (let x = 0; x < dw; x++) {
                const X = dx + x, Y = dy + y;
                if (X < 0 || Y < 0 || X >= width || Y >= height) continue;
                const sx = Math.min(src.width - 1, Math.floor((x + 0.5) * src.width / dw));
                const sy = Math.min(src.height - 1, Math.floor((y + 0.5) * src.height / dh));
                const s = (sy * src.width + sx) * 4, d = (Y * width + X) * 4;
                pixels[d] = src.data[s]; pixels[d + 1] = src.data[s + 1];
                pixels[d + 2] = src.data[s + 2]; pixels[d + 3] = src.data[s + 3];
              }
            }
          },
          getImageData(x, y, w, h) {
            const out = new Uint8ClampedArray(w * h * 4);
            for (let r = 0; r < h; r++) {
              out.set(pixels.subarray(((y + r) * width + x) * 4, ((y + r) * width + x + w) * 4), r * w * 4);
            }
            return { data: out, width: w, height: h };
          },
        };
      },
    };
  }

  cameraContext() {
    const world = this;
    return {
      onCameraFrame(callback) {
        let timer = null;
        let next = 0;
        return {
          start(options = {}) {
            if (world.cameraFails || !world.frames.length) {
              settle(options, wxError("start", "camera not authorized"));
              return;
            }
            clearInterval(timer);
            timer = setInterval(() => {
              callback(world.frames[next++ % world.frames.length]);
            }, 30);
            settle(options, null, { errMsg: "start:ok" });
          },
          stop(options = {}) {
            clearInterval(timer);
            timer = null;
            settle(options, null, { errMsg: "stop:ok" });
          },
        };
      },
      takePhoto(options) { settle(options, wxError("takePhoto", "not used")); },
    };
  }

  /** Put the behaving APIs on the global wx (miniprogram-simulate's stubs stay for the rest). */
  install(target = global.wx) {
    const world = this;
    const fsm = this.fsManager();
    Object.assign(target, {
      env: { USER_DATA_PATH: USER },
      request: (o) => world.request(o),
      downloadFile: (o) => world.downloadFile(o),
      uploadFile: (o) => {
        world.uploads.push(o);
        settle(o, wxError("uploadFile", "refused by the test"));
      },
      getFileSystemManager: () => fsm,
      chooseMedia: (o) => {
        const files = world.picks.shift();
        if (!files) return settle(o, wxError("chooseMedia", "cancel"));
        settle(o, null, { type: "image", tempFiles: files.map((f) => ({ tempFilePath: f,
          size: fs.statSync(f).size, fileType: "image" })) });
      },
      getImageInfo: (o) => {
        try {
          settle(o, null, world.imageInfo(o.src).info);
        } catch (e) {
          settle(o, wxError("getImageInfo", e.message));
        }
      },
      createOffscreenCanvas: (o) => world.offscreenCanvas(o),
      createCameraContext: () => world.cameraContext(),
      getStorageSync: (k) => (world.storage.has(k) ? world.storage.get(k) : ""),
      setStorageSync: (k, v) => { world.storage.set(k, v); },
      removeStorageSync: (k) => { world.storage.delete(k); },
    });
    return this;
  }

  /** Forget what was captured (requests, downloads, uploads). */
  forget() {
    this.requests.length = 0;
    this.downloads.length = 0;
    this.uploads.length = 0;
  }

  cleanup() {
    fs.rmSync(this.root, { recursive: true, force: true });
  }
}

module.exports = { World, USER };
