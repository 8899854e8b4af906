// The page's side of the device pipeline: loads TF.js and the three models from ./vendor/, reads
// a canvas's pixels and hands them to face_core.js, which runs the server's pipeline step for
// step (detector, five landmarks, alignment, FFEM-AM) on plain pixel arrays.
//
// Everything is loaded from ./vendor/ (see prepare.py): TF.js (the copy bundled in face-api),
// the detector and landmark models rebuilt from the OpenVINO files the server ships, the wasm
// backend's binaries and the FFEM-AM export. Nothing is fetched from elsewhere, and no pixel
// leaves this module.
import * as faceapi from "./vendor/face-api.esm.js";

import { LIMITS, createFacePipeline } from "./face_core.js";

export { LIMITS };
export const tf = faceapi.tf;

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
 *   { backend, modelId, dim, metadata, loadMs, process(canvas, options), embedAligned(crop) }
 * `requestedBackend`: "wasm", "webgl" or "cpu" to force one (e.g. from ?backend=).
 */
export async function loadPipeline({ base = "./vendor/", requestedBackend } = {}) {
  const t0 = now();
  tf.setWasmPaths(new URL(base + "tfjs-wasm/", location.href).href);
  // Served cross-origin isolated (the reference server sends COOP/COEP), the wasm backend can
  // run its kernels on several threads, which TF.js caps at half the logical cores: worth it
  // from 4 cores; below that the single-threaded binary is as fast and starts no worker.
  const cores = navigator.hardwareConcurrency ?? 1;
  if (globalThis.crossOriginIsolated && cores >= 4) {
    tf.setThreadsCount(Math.min(cores, 8));
  } else {
    tf.env().set("WASM_HAS_MULTITHREAD_SUPPORT", false);
  }
  const backend = await pickBackend(requestedBackend);
  const [embedder, landmarks, detector] = await Promise.all([
    tf.loadGraphModel(base + "ffem_am/model.json"),
    tf.loadGraphModel(base + "landmarks/model.json"),
    tf.loadGraphModel(base + "detector/model.json"),
  ]);
  const core = createFacePipeline({ tf, detector, landmarks, embedder });
  await core.warmUp();
  return {
    backend,
    modelId: core.modelId,
    dim: core.dim,
    metadata: core.metadata,
    loadMs: now() - t0,
    /** The pipeline on a canvas holding the whole image at its natural size (face_core's
     * process: status, faces, vector, timings). */
    process: async (canvas, options) => {
      const t = now();
      const pixels = canvas.getContext("2d", { willReadFrequently: true })
        .getImageData(0, 0, canvas.width, canvas.height);
      const image = { data: pixels.data, width: pixels.width, height: pixels.height, channels: 4 };
      const readPixels = now() - t;
      const result = await core.process(image, options);
      result.timings.readPixels = readPixels;
      return result;
    },
    embedAligned: core.embedAligned,
  };
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
