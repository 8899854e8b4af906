// What TF.js's Node platform takes from Node's `util`: the text codecs and typed-array tests.
// TF.js builds that platform only where `process` exists and `window` does not (plain Node,
// possibly a tool's simulator); in the WeChat runtime src/tf.js installs its own platform.
const tag = (name) => (x) => Object.prototype.toString.call(x) === `[object ${name}]`;
export const TextEncoder = globalThis.TextEncoder;
export const TextDecoder = globalThis.TextDecoder;
export const types = {
  isFloat32Array: tag("Float32Array"),
  isInt32Array: tag("Int32Array"),
  isUint8Array: tag("Uint8Array"),
  isUint8ClampedArray: tag("Uint8ClampedArray"),
};
export default { TextEncoder, TextDecoder, types };
