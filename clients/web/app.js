// The page: camera or file -> pipeline.js (detect, align, embed) -> codec.js -> api.js.
// Every request body is JSON holding base64url feature payloads and names; never pixels.
import { ApiError, createApi } from "./api.js";
import { FeatureCodec } from "./codec.js";
import { LIMITS, canvasFromFile, canvasFromVideo, loadPipeline } from "./pipeline.js";

const $ = (id) => document.getElementById(id);
const api = createApi("/api/v1", { key: pageKey() });

/**
 * The API key this page uses, as a device gets one: handed over in the URL fragment
 * (`index.html#key=fidk_...`, never sent to any server, removed from the address bar at
 * once) and kept for this tab only (sessionStorage).
 */
function pageKey() {
  const given = new URLSearchParams(location.hash.slice(1)).get("key");
  if (given) {
    sessionStorage.setItem("faceid-key", given);
    history.replaceState(null, "", location.pathname + location.search);
  }
  return sessionStorage.getItem("faceid-key");
}
const now = () => performance.now();

// Test and debugging hook: read-only view of what the page did (vectors stay in the page).
const state = { ready: false, server: null, pipeline: null, samples: [], timings: [], last: null };
window.faceid = state;

let codec = null;
let stream = null;

const MESSAGES = {
  "not-image": (r) => `${r.name || "This file"} is not an image this browser can read: choose ` +
    "a JPEG, PNG or WebP photo.",
  "no-face": () => "No face found. Face the camera in good light, or choose another photo.",
  "several-faces": (r) => `${r.faces.length} faces found: one person at a time, please.`,
  "too-small": (r) => `Face too small (eyes ${r.face.eyeDistance.toFixed(0)} px apart, need ` +
    `${LIMITS.minEyeDistance}): come closer or use a larger photo.`,
};

function setState(name, text) {
  const el = $("state");
  el.dataset.state = name;
  el.textContent = text;
}

function setAnswer(name, text) {
  const el = $("answer");
  el.dataset.answer = name;
  el.textContent = text;
}

function setBusy(busy) {
  document.body.classList.toggle("busy", busy);
  for (const id of ["enroll", "enroll-capture", "identify-capture", "samples-clear"]) {
    $(id).disabled = busy || !state.ready;
  }
  $("enroll-files").disabled = busy || !state.ready;
  $("identify-file").disabled = busy || !state.ready;
  if (!busy && state.ready) {
    $("enroll").disabled = state.samples.length === 0;
    $("enroll-capture").disabled = !stream;
    $("identify-capture").disabled = !stream;
  }
}

function describeError(error) {
  if (error instanceof ApiError) {
    if (error.code === "model_mismatch") {
      return "The server's gallery uses another model than this page: reload after updating.";
    }
    if (error.code === "rate_limited") return "Too many requests: wait a moment and retry.";
    return `Server refused the request (${error.status} ${error.code}): ${error.message}`;
  }
  return `Error: ${error.message ?? error}`;
}

// -- drawing ------------------------------------------------------------------------------

function drawPreview(canvas, result) {
  const preview = $("preview");
  const width = 480;
  const scale = width / canvas.width;
  preview.width = width;
  preview.height = Math.round(canvas.height * scale);
  const ctx = preview.getContext("2d");
  ctx.drawImage(canvas, 0, 0, preview.width, preview.height);
  ctx.lineWidth = 2;
  for (const face of result.faces) {
    const [x, y, w, h] = face.box;
    ctx.strokeStyle = face === result.face && result.status === "ok" ? "#3ddc84" : "#ffb020";
    ctx.strokeRect(x * scale, y * scale, w * scale, h * scale);
    ctx.fillStyle = ctx.strokeStyle;
    for (const [px, py] of face.points) {
      ctx.beginPath();
      ctx.arc(px * scale, py * scale, 2.5, 0, 2 * Math.PI);
      ctx.fill();
    }
  }
  const crop = $("crop").getContext("2d");
  crop.clearRect(0, 0, 96, 96);
  if (result.crop96) crop.putImageData(toImageData(result.crop96), 0, 0);
}

function toImageData(rgb) {
  const out = new ImageData(rgb.width, rgb.height);
  for (let i = 0, j = 0; i < rgb.data.length; i += 3, j += 4) {
    out.data[j] = rgb.data[i];
    out.data[j + 1] = rgb.data[i + 1];
    out.data[j + 2] = rgb.data[i + 2];
    out.data[j + 3] = 255;
  }
  return out;
}

// -- measurements -------------------------------------------------------------------------

function median(values) {
  const s = [...values].sort((a, b) => a - b);
  return s.length ? s[Math.floor((s.length - 1) / 2)] : NaN;
}

/** Bytes of everything loaded from vendor/, by kind (from the Resource Timing API). */
function downloadedBytes() {
  const kinds = { "FFEM-AM model": /\/ffem_am\//, "detector + landmarks": /\/(detector|landmarks)\//,
    "TF.js wasm binary": /\/tfjs-wasm\//, "face-api + TF.js code": /face-api\.esm\.js$/ };
  const bytes = Object.fromEntries(Object.keys(kinds).map((k) => [k, 0]));
  for (const entry of performance.getEntriesByType("resource")) {
    for (const [kind, pattern] of Object.entries(kinds)) {
      if (pattern.test(new URL(entry.name).pathname)) {
        bytes[kind] += entry.encodedBodySize || entry.transferSize || 0;
      }
    }
  }
  return bytes;
}

function renderMetrics() {
  const rows = [];
  const ms = (v) => (Number.isFinite(v) ? `${v.toFixed(1)} ms` : "–");
  const mb = (v) => `${(v / 1e6).toFixed(2)} MB`;
  if (state.pipeline) {
    rows.push(["backend", state.pipeline.backend]);
    rows.push(["models loaded and warmed up in", ms(state.pipeline.loadMs)]);
  }
  const t = state.timings;
  if (t.length) {
    const last = t[t.length - 1];
    rows.push([`detect (box + 5 landmarks), last / median of ${t.length}`,
      `${ms(last.detect)} / ${ms(median(t.map((x) => x.detect)))}`]);
    rows.push(["align (5 points → 96×96)", `${ms(last.align)} / ${ms(median(t.map((x) => x.align)))}`]);
    rows.push(["embed (FFEM-AM)", `${ms(last.embed)} / ${ms(median(t.map((x) => x.embed)))}`]);
  }
  if (state.lastIdentify) {
    rows.push(["identify: photo → answer", ms(state.lastIdentify.total)]);
    rows.push(["identify: HTTP round trip", ms(state.lastIdentify.http)]);
    rows.push(["identify: request body", `${state.lastIdentify.bodyBytes} bytes`]);
  }
  const bytes = downloadedBytes();
  state.bytes = bytes;
  for (const [kind, n] of Object.entries(bytes)) rows.push([`downloaded: ${kind}`, mb(n)]);
  const body = $("metrics").tBodies[0];
  body.replaceChildren(...rows.map(([k, v]) => {
    const tr = document.createElement("tr");
    for (const text of [k, v]) {
      const td = document.createElement("td");
      td.textContent = text;
      tr.append(td);
    }
    return tr;
  }));
}

// -- flows ----------------------------------------------------------------------------------

/** A file as a canvas, or null after showing why it cannot be read. */
async function readFile(file, label) {
  try {
    return await canvasFromFile(file);
  } catch {
    setState("not-image", (label ? `${label}: ` : "") + MESSAGES["not-image"](file));
    return null;
  }
}

/** Why a photo gave no face, in a few words (for the list of skipped photos). */
const SHORT = { "not-image": "not an image", "no-face": "no face found",
  "several-faces": "several faces", "too-small": "face too small" };

/**
 * Run the pipeline on one image; returns the result, or null after showing why not.
 * `deferDrawing`: for a usable face, leave the preview and the metrics to `result.present()`
 * (identify draws them after the answer is shown: the answer comes first).
 */
async function analyse(canvas, label, { deferDrawing = false } = {}) {
  const result = await state.pipeline.process(canvas);
  state.last = { status: result.status, faces: result.faces.length,
    vector: result.vector ? Array.from(result.vector) : null,
    points: result.face?.points ?? null, timings: result.timings };
  if (result.status !== "ok") {
    drawPreview(canvas, result);
    setState(result.status, (label ? `${label}: ` : "") + MESSAGES[result.status](result));
    return null;
  }
  state.timings.push(result.timings);
  result.present = () => {
    drawPreview(canvas, result);
    renderMetrics();
  };
  if (!deferDrawing) result.present();
  return result;
}

function addSample(result) {
  const max = state.server.max_enroll_features ?? 16;
  if (state.samples.length >= max) {
    setState("error", `At most ${max} photos per enrollment: enroll these first.`);
    return;
  }
  state.samples.push({ vector: result.vector, crop96: result.crop96 });
  const thumb = document.createElement("canvas");
  thumb.width = thumb.height = 96;
  thumb.getContext("2d").putImageData(toImageData(result.crop96), 0, 0);
  $("samples").append(thumb);
}

async function onEnrollFiles(files) {
  setBusy(true);
  setAnswer("none", "");
  let added = 0;
  const skipped = [];
  try {
    for (const [i, file] of [...files].entries()) {
      const label = files.length > 1 ? `photo ${i + 1} (${file.name})` : "";
      const canvas = await readFile(file, label);
      const result = canvas ? await analyse(canvas, label) : null;
      if (result) {
        addSample(result);
        added++;
      } else {
        skipped.push(`${file.name}: ${SHORT[canvas ? state.last.status : "not-image"]}`);
      }
    }
    if (added) {
      setState("ok", `${state.samples.length} face(s) ready to enroll` +
        (skipped.length ? `; skipped ${skipped.join("; ")}` : "") + ".");
    } else if (files.length > 1) {
      setState("no-face", `None of these photos gave a usable face (${skipped.join("; ")}).`);
    }
  } catch (error) {
    setState("error", describeError(error));
  } finally {
    setBusy(false);
  }
}

async function onEnroll() {
  const identity = $("identity").value.trim();
  if (!identity) {
    setState("error", "Type an identity (a name or id) first.");
    $("identity").focus();
    return;
  }
  setBusy(true);
  try {
    const features = state.samples.map((s) => codec.encodeText(s.vector));
    const displayName = $("display-name").value.trim();
    const answer = await api.enroll(identity, features, displayName || undefined);
    const who = displayName || answer.identity;
    const conflicts = answer.conflicts ?? [];
    setState(conflicts.length ? "enrolled-conflict" : "enrolled",
      `Enrolled ${who}: ${answer.templates_added} face(s)` +
      (answer.created ? " (new identity)." : " added to the existing identity.") +
      (conflicts.length ? ` Warning: these faces also match ${conflicts.join(", ")}; ` +
        "check that this is not the same person enrolled twice." : ""));
    setAnswer("none", "");
    clearSamples();
    // The next person's photos must not be filed under this name.
    $("identity").value = "";
    $("display-name").value = "";
  } catch (error) {
    setState("error", describeError(error));
  } finally {
    setBusy(false);
  }
}

function clearSamples() {
  state.samples = [];
  $("samples").replaceChildren();
}

/** Identify the face on *canvas*; `t0`: when the photo was chosen (file read and decode
 * count in "photo → answer"), else now (a camera frame). */
async function onIdentify(canvas, t0 = now()) {
  setBusy(true);
  setAnswer("none", "");
  try {
    const result = await analyse(canvas, "", { deferDrawing: true });
    if (!result) {
      setAnswer("none", "");
      return;
    }
    const text = codec.encodeText(result.vector);
    const t1 = now();
    let answer;
    try {
      answer = await api.identify(text, { challengeRequired: state.server.challenge_required });
    } finally {
      // The answer (or the error) is shown first; the preview and the metrics follow.
      setTimeout(result.present, 0);
    }
    const t2 = now();
    state.lastIdentify = { total: t2 - t0, http: t2 - t1,
      bodyBytes: JSON.stringify({ features: text }).length, answer };
    if (answer.recognised) {
      const who = answer.display_name || answer.identity;
      setState("recognised", `Recognised as ${who}.`);
      setAnswer("recognised", `Recognised as ${who}`);
    } else if (answer.reason === "ambiguous") {
      setState("ambiguous", "Not sure: this face is close to more than one enrolled person.");
      setAnswer("ambiguous", "Not sure who this is");
    } else if (answer.reason === "empty_gallery") {
      setState("not-recognised", "Nobody is enrolled yet: enroll someone first.");
      setAnswer("not-recognised", "Not recognised");
    } else {
      setState("not-recognised", "Not recognised: this face is not enrolled.");
      setAnswer("not-recognised", "Not recognised");
    }
  } catch (error) {
    setState("error", describeError(error));
  } finally {
    setBusy(false);
  }
}

// -- camera ---------------------------------------------------------------------------------

async function startCamera() {
  try {
    stream = await navigator.mediaDevices.getUserMedia({
      video: { facingMode: "user", width: { ideal: 640 }, height: { ideal: 480 } }, audio: false,
    });
  } catch (error) {
    setState("error", `Camera unavailable (${error.name}): allow camera access, or use a ` +
      "photo. Browsers grant the camera only to https:// pages and localhost.");
    return;
  }
  const video = $("video");
  video.srcObject = stream;
  video.hidden = false;
  await video.play();
  $("camera-start").hidden = true;
  $("camera-stop").hidden = false;
  setBusy(false);
}

function stopCamera() {
  stream?.getTracks().forEach((track) => track.stop());
  stream = null;
  $("video").hidden = true;
  $("camera-start").hidden = false;
  $("camera-stop").hidden = true;
  setBusy(false);
}

// -- start ----------------------------------------------------------------------------------

async function main() {
  setBusy(true);
  $("identify-file").addEventListener("change", async (e) => {
    const [file] = e.target.files;
    e.target.value = "";
    if (!file) return;
    setAnswer("none", "");
    const chosen = now();
    const canvas = await readFile(file);
    if (canvas) await onIdentify(canvas, chosen);
  });
  $("enroll-files").addEventListener("change", async (e) => {
    const files = [...e.target.files];
    e.target.value = "";
    if (files.length) await onEnrollFiles(files);
  });
  $("enroll").addEventListener("click", onEnroll);
  $("samples-clear").addEventListener("click", () => {
    clearSamples();
    setState("ready", "Cleared: add photos to enroll someone, or identify a photo.");
    setBusy(false);
  });
  $("camera-start").addEventListener("click", startCamera);
  $("camera-stop").addEventListener("click", stopCamera);
  $("enroll-capture").addEventListener("click", captureForEnroll);
  $("identify-capture").addEventListener("click", () => onIdentify(canvasFromVideo($("video"))));

  try {
    const backend = new URLSearchParams(location.search).get("backend") || undefined;
    const manifest = await fetch("vendor/manifest.json").then((r) => (r.ok ? r.json() : {}),
      () => ({}));
    const [pipeline, server] = await Promise.all([
      loadPipeline({ requestedBackend: backend }), api.model(),
    ]);
    state.pipeline = pipeline;
    state.server = server;
    if (server.model_id !== pipeline.modelId || server.dim !== pipeline.dim) {
      throw new Error(`the server expects model ${server.model_id} (${server.dim}-d) but this ` +
        `page has ${pipeline.modelId} (${pipeline.dim}-d): run clients/web/prepare.py again`);
    }
    codec = new FeatureCodec(server.model_id, server.dim);
    $("model-line").textContent = `model ${pipeline.modelId} · ${pipeline.dim}-d · TF.js ` +
      `${pipeline.backend} · match below distance ${server.threshold}`;
    if (manifest.model?.source === "random") {
      const warning = $("warning");
      warning.hidden = false;
      warning.textContent = "This page runs random test weights (no trained model was " +
        "exported yet): the flow works, recognition does not.";
    }
    state.ready = true;
    setState("ready", "Ready: add photos to enroll someone, or identify a photo.");
  } catch (error) {
    setState("error", `Could not start: ${describeError(error)}`);
  } finally {
    renderMetrics();
    setBusy(false);
  }
}

async function captureForEnroll() {
  setBusy(true);
  try {
    const result = await analyse(canvasFromVideo($("video")));
    if (result) {
      addSample(result);
      setState("ok", `${state.samples.length} face(s) ready to enroll.`);
    }
  } catch (error) {
    setState("error", describeError(error));
  } finally {
    setBusy(false);
  }
}

main();
