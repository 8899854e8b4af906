// TF.js for the mini-program: tfjs-core, the graph-model loader and the pure-JS cpu backend
// (4.22.0, the version clients/web uses). The cpu backend needs nothing from the host; in
// WeChat itself the official TensorFlow.js plugin can add its webgl backend (README.md).
import * as tf from "@tensorflow/tfjs-core";
import "@tensorflow/tfjs-backend-cpu";
import { loadGraphModel } from "@tensorflow/tfjs-converter";

export { tf, loadGraphModel };

// UTF-8 both ways without TextEncoder (the WeChat runtime may lack it): TF.js needs it only for
// string tensors, which none of the three models has, and for model.json text it never sees
// here (src/models.js parses model.json itself).
function utf8Encode(text) {
  const bytes = [];
  for (const ch of text) {
    const c = ch.codePointAt(0);
    if (c < 0x80) bytes.push(c);
    else if (c < 0x800) bytes.push(0xc0 | (c >> 6), 0x80 | (c & 63));
    else if (c < 0x10000) bytes.push(0xe0 | (c >> 12), 0x80 | ((c >> 6) & 63), 0x80 | (c & 63));
    else bytes.push(0xf0 | (c >> 18), 0x80 | ((c >> 12) & 63), 0x80 | ((c >> 6) & 63), 0x80 | (c & 63));
  }
  return new Uint8Array(bytes);
}

function utf8Decode(bytes) {
  let out = "";
  for (let i = 0; i < bytes.length;) {
    const b = bytes[i++];
    let c = b;
    if (b >= 0xf0) c = ((b & 7) << 18) | ((bytes[i++] & 63) << 12) | ((bytes[i++] & 63) << 6) | (bytes[i++] & 63);
    else if (b >= 0xe0) c = ((b & 15) << 12) | ((bytes[i++] & 63) << 6) | (bytes[i++] & 63);
    else if (b >= 0xc0) c = ((b & 31) << 6) | (bytes[i++] & 63);
    out += String.fromCodePoint(c);
  }
  return out;
}

/** The platform TF.js runs on where it found none (WeChat's runtime has no window, document or
 * process): a clock, text codecs and a fetch that says models come through src/models.js. */
export const wechatPlatform = {
  fetch: () => Promise.reject(new Error("TF.js fetch is not used: src/models.js loads the models")),
  now: () => Date.now(),
  encode: (text) => utf8Encode(text),
  decode: (bytes) => utf8Decode(new Uint8Array(bytes)),
  isTypedArray: (a) => ArrayBuffer.isView(a) && !(a instanceof DataView),
  setTimeoutCustom: (fn, delay) => setTimeout(fn, delay),
};

const B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/** atob for runtimes without it (WeChat's): the graph-model loader decodes the models' string
 * attributes ("SAME", "NHWC") with the global atob. */
export function atobPolyfill(text) {
  const clean = String(text).replace(/[\s=]+/g, "");
  let out = "";
  let bits = 0, value = 0;
  for (const ch of clean) {
    const v = B64.indexOf(ch);
    if (v < 0) throw new Error("atob: not base64");
    value = (value << 6) | v;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out += String.fromCharCode((value >> bits) & 0xff);
    }
  }
  return out;
}

/** Start a backend: `backend` if given and registered (e.g. the plugin's webgl), else cpu.
 * Resolves to its name. */
export async function startTf(backend) {
  if (!tf.env().platform) tf.setPlatform("wechat", wechatPlatform);
  const global = tf.env().global;
  if (typeof global.atob === "undefined") global.atob = atobPolyfill;
  for (const name of backend ? [backend, "cpu"] : ["cpu"]) {
    try {
      if (await tf.setBackend(name)) {
        await tf.ready();
        return name;
      }
    } catch {
      // the next one
    }
  }
  throw new Error(`no TF.js backend could start (tried ${backend ? backend + ", " : ""}cpu)`);
}
