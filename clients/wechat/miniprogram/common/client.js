// @ts-check
// What both pages do: start the shared client, read pixels (picked photos, camera frames),
// run the pipeline and show its refusals. Pixels, crops and vectors stay in this process
// (never in page data, never in a request); only codec payloads reach wx.request.
const faceid = require("../lib/faceid.js");
const config = require("../config.js");

/** The shared client (faceid.startSession): models from the phone's cache or fetched once. */
function session() {
  return faceid.startSession({
    server: config.server,
    key: wx.getStorageSync("faceid-key") || null,
    backend: config.backend,
  });
}

/** The line under the title: which model, backend and threshold, and where the models came from. */
function modelLine(s) {
  const from = s.models.source === "cache" ? "from this phone's cache"
    : `downloaded once (${(s.models.bytes / 1e6).toFixed(1)} MB) and cached`;
  return `model ${s.pipeline.modelId} · ${s.pipeline.dim}-d · TF.js ${s.backend} · match ` +
    `below distance ${s.server.threshold} · models ${from}`;
}

/** Up to `count` photos from the album or the camera app; [] when the person cancels. */
function choosePhotos(count) {
  return new Promise((resolve, reject) => {
    wx.chooseMedia({
      count, mediaType: ["image"], sourceType: ["album", "camera"], sizeType: ["original"],
      success: (res) => resolve(res.tempFiles.map((f) => f.tempFilePath)),
      fail: (err) => (/cancel/.test(err && err.errMsg) ? resolve([])
        : reject(new Error(`could not pick a photo (${err && err.errMsg})`))),
    });
  });
}

/** One frame at a time from the page's <camera> (CameraContext.onCameraFrame), as pixels. */
function cameraGrabber() {
  const context = wx.createCameraContext();
  let pending = null;
  const listener = context.onCameraFrame((frame) => {
    if (!pending) return;
    const { resolve, reject, timer } = pending;
    pending = null;
    clearTimeout(timer);
    listener.stop();
    try {
      resolve(faceid.imageFromFrame(frame));
    } catch (error) {
      reject(error);
    }
  });
  return {
    grab(timeoutMs = 5000) {
      if (pending) return Promise.reject(new Error("already waiting for a camera frame"));
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => {
          pending = null;
          listener.stop();
          reject(new Error(`no camera frame within ${timeoutMs / 1000} s: allow the camera`));
        }, timeoutMs);
        pending = { resolve, reject, timer };
        listener.start({
          fail: (err) => {
            if (!pending) return;
            clearTimeout(timer);
            pending = null;
            reject(new Error(`the camera gives no frames (${err && err.errMsg})`));
          },
        });
      });
    },
    stop() {
      if (pending) {
        clearTimeout(pending.timer);
        pending.reject(new Error("camera stopped"));
        pending = null;
      }
      listener.stop();
    },
  };
}

/** A picked photo's pixels, or null after `show` was told why not ("not-image"). */
async function readPhoto(path, label, show) {
  try {
    return (await faceid.readPhoto(path, { maxSide: config.maxPhotoSide })).image;
  } catch (error) {
    if (error.code !== "not-image") throw error;
    show("not-image", (label ? `${label}: ` : "") + faceid.MESSAGES["not-image"]({
      name: path.split("/").pop() }));
    return null;
  }
}

/** The pipeline on pixels: the result, or null after `show` was told the refusal. */
async function analyse(s, image, label, show) {
  const result = await s.pipeline.process(image);
  if (result.status !== "ok") {
    show(result.status, (label ? `${label}: ` : "") + faceid.MESSAGES[result.status](result));
    return { refused: result.status, result };
  }
  return { result };
}

function ms(v) {
  return Number.isFinite(v) ? `${v.toFixed(0)} ms` : "–";
}

/** A few measurements for the metrics line. */
function metricsLine(s, timings) {
  const parts = [`models ready in ${ms(s.timings.totalMs)}`];
  if (timings) {
    parts.push(`detect ${ms(timings.detect)}`, `align ${ms(timings.align)}`,
      `embed ${ms(timings.embed)}`);
    if (timings.http !== undefined) parts.push(`server ${ms(timings.http)}`);
  }
  return parts.join(" · ");
}

module.exports = {
  faceid, config, session, modelLine, choosePhotos, cameraGrabber, readPhoto, analyse,
  metricsLine,
};
