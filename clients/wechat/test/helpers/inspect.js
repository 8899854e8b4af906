// The request inspection: every wx.request the mini-program made is JSON to the server's API
// with names and valid feature payloads only; nothing resembles an image; the model files came
// by GET downloads of /vendor/; nothing was uploaded.
const fs = require("fs");

const BODY_KEYS = new Set(["identity", "display_name", "features", "challenge"]);
const ROUTES = new Set(["GET /api/v1/model", "POST /api/v1/enroll", "POST /api/v1/identify",
  "POST /api/v1/challenge"]);
/** Found anywhere in a body; short signatures (BMP, WebP, TIFF) only at its start. */
const IMAGE_MAGIC = [Buffer.from([0xff, 0xd8, 0xff]), Buffer.from("\x89PNG\r\n", "latin1"),
  Buffer.from("GIF87a"), Buffer.from("GIF89a")];
const IMAGE_MAGIC_START = ["RIFF", "BM", "II*\x00", "MM\x00*"].map((s) => Buffer.from(s, "latin1"));
const IMAGE_BASE64 = ["/9j/", "_9j_", "iVBORw0KGgo", "data:image", "R0lGOD"];

/** Slices of each photo (raw, base64, base64url) that must appear in no body. */
function photoSlices(photos) {
  const out = [];
  for (const photo of photos) {
    const data = fs.readFileSync(photo);
    const chunk = data.subarray(data.length >> 1, (data.length >> 1) + 48);
    out.push(chunk, Buffer.from(chunk.toString("base64").slice(8, 40)),
      Buffer.from(chunk.toString("base64url").slice(8, 40)));
  }
  return out;
}

/**
 * Check every captured request; throws on the first violation. Returns counts
 * {requests, bodies, payloads, maxBodyBytes, downloads} and the decoded vectors by route.
 */
function assertOnlyVectors({ requests, downloads, uploads }, { url, key, codec, photos = [],
  frames = [] }) {
  const origin = new URL(url).host;
  const slices = photoSlices(photos);
  for (const frame of frames) {
    const bytes = Buffer.from(frame.data);
    const chunk = bytes.subarray(bytes.length >> 1, (bytes.length >> 1) + 48);
    slices.push(chunk, Buffer.from(chunk.toString("base64").slice(8, 40)));
  }
  const counts = { requests: 0, bodies: 0, payloads: 0, maxBodyBytes: 0, downloads: 0 };
  const vectors = { enroll: [], identify: [] };
  if (uploads.length) throw new Error(`wx.uploadFile was called ${uploads.length} time(s)`);
  for (const r of requests) {
    counts.requests++;
    const u = new URL(r.url);
    const where = `${r.method} ${u.pathname}`;
    if (u.host !== origin) throw new Error(`${where}: request to ${u.host}, not the server`);
    if (!ROUTES.has(where)) throw new Error(`${where}: not a route the mini-program may call`);
    if (u.search) throw new Error(`${where}: carries a query string ${u.search}`);
    if (r.url.includes(key)) throw new Error(`${where}: the API key is in the URL`);
    const header = Object.fromEntries(Object.entries(r.header).map(([k, v]) => [k.toLowerCase(), v]));
    if (header.authorization !== `Bearer ${key}`) throw new Error(`${where}: no Bearer key`);
    const ctype = String(header["content-type"] ?? "");
    if (/^(multipart\/|image\/)/.test(ctype)) throw new Error(`${where}: content-type ${ctype}`);
    const body = r.body;
    if (!body || !body.length) {
      if (r.method === "POST" && u.pathname !== "/api/v1/challenge") {
        throw new Error(`${where}: a POST without a body`);
      }
      continue;
    }
    counts.bodies++;
    counts.maxBodyBytes = Math.max(counts.maxBodyBytes, body.length);
    if (typeof r.data !== "string") throw new Error(`${where}: data is not a JSON string`);
    if (!ctype.startsWith("application/json")) throw new Error(`${where}: content-type ${ctype}`);
    if (body.includes(key)) throw new Error(`${where}: the API key is in the body`);
    if (IMAGE_MAGIC.some((m) => body.includes(m))) throw new Error(`${where}: image magic bytes`);
    if (IMAGE_MAGIC_START.some((m) => body.subarray(0, m.length).equals(m))) {
      throw new Error(`${where}: starts like an image`);
    }
    if (slices.some((s) => body.includes(s))) throw new Error(`${where}: carries bytes of a photo`);
    const text = body.toString("utf8");
    if (IMAGE_BASE64.some((m) => text.includes(m))) throw new Error(`${where}: an image as text`);
    const doc = JSON.parse(text);
    if (typeof doc !== "object" || doc === null || Array.isArray(doc)) {
      throw new Error(`${where}: the body is not a JSON object`);
    }
    for (const k of Object.keys(doc)) {
      if (!BODY_KEYS.has(k)) throw new Error(`${where}: unexpected field ${k}`);
    }
    for (const k of ["identity", "display_name", "challenge"]) {
      if (k in doc && typeof doc[k] !== "string") throw new Error(`${where}: ${k} is not a string`);
      if (k in doc && doc[k].length > 256) throw new Error(`${where}: ${k} is ${doc[k].length} chars`);
    }
    const features = doc.features === undefined ? [] : Array.isArray(doc.features)
      ? doc.features : [doc.features];
    for (const payload of features) {
      const vector = codec.decodeText(payload); // throws unless a valid feature payload
      if (vector.length !== codec.dim) throw new Error(`${where}: a ${vector.length}-d vector`);
      counts.payloads++;
      (u.pathname.endsWith("/enroll") ? vectors.enroll : vectors.identify).push(vector);
    }
    if (body.length > 16 * 800 + 300) throw new Error(`${where}: ${body.length} bytes`);
  }
  for (const d of downloads) {
    const u = new URL(d.url);
    if (u.host !== origin || !/^\/vendor\/(ffem_am|detector|landmarks)\/[\w.-]+$/.test(u.pathname)) {
      throw new Error(`downloadFile ${d.url}: not one of the server's model files`);
    }
    counts.downloads++;
  }
  return { counts, vectors };
}

module.exports = { assertOnlyVectors };
