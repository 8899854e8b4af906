// The feature wire format (docs/wire-format.md) in JavaScript: byte-identical to
// faceid_sdk.FeatureCodec on tests/vectors/codec_vectors.json, with the same error codes.
//
// No dependencies and no browser API (no btoa, no TextEncoder, no Float16Array), so the same
// file runs in a browser, in Node (the conformance test) and in a WeChat mini-program.
//
//   const codec = new FeatureCodec("ffem-am-128-3f2a9c1b0d4e", 128);
//   const text = codec.encodeText(vector);       // what goes into the JSON body
//   const vector = codec.decodeText(text);       // Float32Array, or throws FeatureError

export const MAGIC = [0x46, 0x49, 0x44, 0x56]; // "FIDV"
export const WIRE_VERSION = 1;
export const MAX_MODEL_ID_LENGTH = 64;
export const MAX_DIM = 2048;
export const MAX_PAYLOAD_BYTES = 9 + MAX_MODEL_ID_LENGTH + 4 * MAX_DIM + 4; // 8269
export const MAX_TEXT_CHARS = Math.floor((MAX_PAYLOAD_BYTES * 4 + 2) / 3); // 11026
export const NORM_TOLERANCE = 0.01;

const NORM2_LO = (1 - NORM_TOLERANCE) ** 2;
const NORM2_HI = (1 + NORM_TOLERANCE) ** 2;
const HEADER = 9;
const DTYPES = { float32: 1, float16: 2 };
const DTYPE_NAMES = { 1: "float32", 2: "float16" };
const DTYPE_SIZES = { 1: 4, 2: 2 };
const MODEL_ID = /^[A-Za-z0-9._-]{1,64}$/;
const B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
const B64_VALUE = new Int16Array(128).fill(-1);
for (let i = 0; i < 64; i++) B64_VALUE[B64.charCodeAt(i)] = i;

/** Refusal of a vector or payload; `code` is the same as Python's InvalidFeatureError.code. */
export class FeatureError extends Error {
  constructor(message, code) {
    super(message);
    this.name = code === "model_mismatch" || code === "dimension"
      ? "ModelMismatchError" : "InvalidFeatureError";
    this.code = code;
  }
}

const fail = (code, message) => { throw new FeatureError(message, code); };

// -- CRC-32 (IEEE 802.3, as zlib) -------------------------------------------------------

const CRC_TABLE = new Uint32Array(256);
for (let n = 0; n < 256; n++) {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  CRC_TABLE[n] = c >>> 0;
}

/** CRC-32 of a Uint8Array, as an unsigned 32-bit number (crc32("123456789") = 0xCBF43926). */
export function crc32(bytes) {
  let c = 0xffffffff;
  for (let i = 0; i < bytes.length; i++) c = CRC_TABLE[(c ^ bytes[i]) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

// -- float16 ----------------------------------------------------------------------------

const F32 = new Float32Array(1);
const U32 = new Uint32Array(F32.buffer);

/** binary16 bits of a float32 value, round to nearest, ties to even (as NumPy's astype). */
export function floatToHalfBits(value) {
  F32[0] = value;
  const f = U32[0];
  const sign = (f >>> 16) & 0x8000;
  const exp = f & 0x7f800000;
  if (exp >= 0x47800000) { // overflow, Inf or NaN
    if (exp === 0x7f800000 && (f & 0x7fffff) !== 0) {
      const nan = 0x7c00 + ((f & 0x7fffff) >>> 13);
      return sign | (nan === 0x7c00 ? 0x7c01 : nan);
    }
    return sign | 0x7c00;
  }
  if (exp <= 0x38000000) { // a subnormal half or zero
    if (exp < 0x33000000) return sign;
    const e = exp >>> 23;
    let sig = (0x800000 + (f & 0x7fffff)) >>> (113 - e);
    // Ties to even: round up unless exactly halfway with an even result and no lost bits.
    if ((sig & 0x3fff) !== 0x1000 || (f & 0x7ff) !== 0) sig += 0x1000;
    return sign | (sig >>> 13);
  }
  let sig = f & 0x7fffff;
  if ((sig & 0x3fff) !== 0x1000) sig += 0x1000;
  // A carry out of the significand increments the exponent (possibly to Inf): correct.
  return (sign | (((exp - 0x38000000) >>> 13) + (sig >>> 13))) & 0xffff;
}

/** The value of binary16 bits, as a number (exact). */
export function halfBitsToFloat(h) {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >>> 10) & 0x1f;
  const frac = h & 0x3ff;
  if (exp === 0) return sign * frac * 2 ** -24;
  if (exp === 0x1f) return frac ? NaN : sign * Infinity;
  return sign * (1 + frac / 1024) * 2 ** (exp - 15);
}

// -- base64url (RFC 4648 section 5, unpadded, strict) ------------------------------------

/** Unpadded base64url of a Uint8Array. */
export function base64urlEncode(bytes) {
  let out = "";
  let i = 0;
  for (; i + 2 < bytes.length; i += 3) {
    const n = (bytes[i] << 16) | (bytes[i + 1] << 8) | bytes[i + 2];
    out += B64[n >>> 18] + B64[(n >>> 12) & 63] + B64[(n >>> 6) & 63] + B64[n & 63];
  }
  const rest = bytes.length - i;
  if (rest === 1) {
    const n = bytes[i] << 16;
    out += B64[n >>> 18] + B64[(n >>> 12) & 63];
  } else if (rest === 2) {
    const n = (bytes[i] << 16) | (bytes[i + 1] << 8);
    out += B64[n >>> 18] + B64[(n >>> 12) & 63] + B64[(n >>> 6) & 63];
  }
  return out;
}

/** Bytes of a strict unpadded base64url string; throws FeatureError (code base64, ...). */
export function base64urlDecode(text) {
  if (typeof text !== "string") {
    fail("type", `text payload must be a string of base64url (got ${typeof text})`);
  }
  const n = text.length;
  if (n === 0) fail("empty", "text payload must not be empty (got ''): the client sent no vector");
  if (n > MAX_TEXT_CHARS) {
    fail("oversized", `text payload must be at most ${MAX_TEXT_CHARS} characters (got ${n}): ` +
      "this is not a feature vector");
  }
  const values = new Uint8Array(n);
  for (let i = 0; i < n; i++) {
    const c = text.charCodeAt(i);
    const v = c < 128 ? B64_VALUE[c] : -1;
    if (v < 0) {
      fail("base64", "text payload must use only the base64url alphabet A-Z a-z 0-9 '-' '_' " +
        `(got ${JSON.stringify(text[i])} at position ${i})`);
    }
    values[i] = v;
  }
  if (n % 4 === 1) {
    fail("base64", `text payload length must not be 1 more than a multiple of 4 (got ${n})`);
  }
  const last = values[n - 1];
  if ((n % 4 === 2 && (last & 0x0f)) || (n % 4 === 3 && (last & 0x03))) {
    fail("base64", "text payload must be canonical base64url (got unused low bits set in the " +
      `last character ${JSON.stringify(text[n - 1])})`);
  }
  const out = new Uint8Array(Math.floor((n * 3) / 4));
  let o = 0;
  let i = 0;
  for (; i + 3 < n; i += 4) {
    const v = (values[i] << 18) | (values[i + 1] << 12) | (values[i + 2] << 6) | values[i + 3];
    out[o++] = v >>> 16;
    out[o++] = (v >>> 8) & 0xff;
    out[o++] = v & 0xff;
  }
  if (n - i === 2) {
    out[o++] = (values[i] << 2) | (values[i + 1] >>> 4);
  } else if (n - i === 3) {
    const v = (values[i] << 12) | (values[i + 1] << 6) | values[i + 2];
    out[o++] = v >>> 10;
    out[o++] = (v >>> 2) & 0xff;
  }
  return out;
}

// -- payloads ---------------------------------------------------------------------------

function modelIdBytes(modelId) {
  const bytes = new Uint8Array(modelId.length);
  for (let i = 0; i < modelId.length; i++) bytes[i] = modelId.charCodeAt(i);
  return bytes;
}

/** Checks 1 to 11 of docs/wire-format.md (no configuration needed); returns the header. */
export function peekHeader(data) {
  const bytes = typeof data === "string" ? base64urlDecode(data) : asBytes(data);
  const n = bytes.length;
  if (n === 0) fail("empty", "payload must not be empty (got 0 bytes): the client sent no vector");
  if (n > MAX_PAYLOAD_BYTES) {
    fail("oversized", `payload must be at most ${MAX_PAYLOAD_BYTES} bytes (got ${n})`);
  }
  if (n < HEADER) fail("truncated", `payload must be at least ${HEADER} bytes (got ${n})`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  for (let i = 0; i < 4; i++) {
    if (bytes[i] !== MAGIC[i]) fail("magic", "payload must start with the magic 'FIDV'");
  }
  const version = bytes[4];
  if (version !== WIRE_VERSION) {
    fail("version", `payload version must be ${WIRE_VERSION} (got ${version})`);
  }
  const code = bytes[5];
  if (code !== 1 && code !== 2) {
    fail("dtype", `payload dtype code must be 1 (float32) or 2 (float16) (got ${code})`);
  }
  const dim = view.getUint16(6, true);
  const idLength = bytes[8];
  if (idLength < 1 || idLength > MAX_MODEL_ID_LENGTH) {
    fail("model_id", `payload model id length must be 1 to ${MAX_MODEL_ID_LENGTH} (got ${idLength})`);
  }
  const expected = HEADER + idLength + DTYPE_SIZES[code] * dim + 4;
  if (n < expected) {
    fail("truncated", `payload must be ${expected} bytes (got ${n}, ${expected - n} missing)`);
  }
  if (n > expected) {
    fail("trailing_bytes", `payload must be ${expected} bytes (got ${n}, ${n - expected} extra)`);
  }
  const modelId = String.fromCharCode(...bytes.subarray(HEADER, HEADER + idLength));
  if (!MODEL_ID.test(modelId)) {
    fail("model_id", "payload model id must be ASCII letters, digits, '.', '_' or '-'");
  }
  const stored = view.getUint32(n - 4, true);
  const computed = crc32(bytes.subarray(0, n - 4));
  if (stored !== computed) {
    fail("checksum", `payload checksum must be ${hex8(computed)} (got ${hex8(stored)}): ` +
      "the payload was corrupted in transit");
  }
  return { version, dtype: DTYPE_NAMES[code], dim, modelId };
}

function hex8(n) {
  return n.toString(16).padStart(8, "0");
}

function asBytes(data) {
  if (data instanceof Uint8Array) return data;
  if (data instanceof ArrayBuffer) return new Uint8Array(data);
  if (ArrayBuffer.isView(data)) return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  return fail("type", `payload must be a Uint8Array or ArrayBuffer (got ${typeof data})`);
}

function checkValues(values, where) {
  let sum = 0;
  for (let i = 0; i < values.length; i++) sum += values[i] * values[i]; // doubles
  if (sum >= NORM2_LO && sum <= NORM2_HI) return;
  for (let i = 0; i < values.length; i++) {
    if (!Number.isFinite(values[i])) {
      fail("non_finite", `${where} must be finite (got ${values[i]} at element ${i})`);
    }
  }
  fail("norm", `${where} must be L2-normalized, norm 1 ± ${NORM_TOLERANCE} ` +
    `(got norm ${Math.sqrt(sum).toPrecision(6)}): divide by its L2 norm before encoding`);
}

/** Encoder and decoder of the vectors of one model (modelId) and dimension (dim). */
export class FeatureCodec {
  constructor(modelId, dim, dtype = "float32") {
    if (typeof modelId !== "string" || !MODEL_ID.test(modelId)) {
      fail("model_id", "modelId must be 1 to 64 ASCII letters, digits, '.', '_' or '-' " +
        `(got ${JSON.stringify(modelId)})`);
    }
    if (!Number.isInteger(dim) || dim < 1 || dim > MAX_DIM) {
      fail("dimension", `dim must be an integer from 1 to ${MAX_DIM} (got ${dim})`);
    }
    dtypeCode(dtype);
    this.modelId = modelId;
    this.dim = dim;
    this.dtype = dtype;
    this._id = modelIdBytes(modelId);
  }

  /** Binary payload (Uint8Array) of one L2-normalized vector of length dim. */
  encode(vector, { dtype } = {}) {
    const code = dtypeCode(dtype ?? this.dtype);
    const values = this._coerce(vector);
    const size = DTYPE_SIZES[code];
    const offset = HEADER + this._id.length;
    const total = offset + size * this.dim + 4;
    const out = new Uint8Array(total);
    const view = new DataView(out.buffer);
    out.set(MAGIC, 0);
    out[4] = WIRE_VERSION;
    out[5] = code;
    view.setUint16(6, this.dim, true);
    out[8] = this._id.length;
    out.set(this._id, HEADER);
    // Checked as written (after float16 rounding), exactly as a decoder will see them.
    const wire = new Float64Array(this.dim);
    for (let i = 0; i < this.dim; i++) {
      if (code === 1) {
        view.setFloat32(offset + 4 * i, values[i], true);
        wire[i] = values[i];
      } else {
        const h = floatToHalfBits(values[i]);
        view.setUint16(offset + 2 * i, h, true);
        wire[i] = halfBitsToFloat(h);
      }
    }
    checkValues(wire, "vector");
    view.setUint32(total - 4, crc32(out.subarray(0, total - 4)), true);
    return out;
  }

  /** Text form of encode(): unpadded base64url, safe in JSON and URLs. */
  encodeText(vector, options) {
    return base64urlEncode(this.encode(vector, options));
  }

  /** Float32Array carried by a binary payload; throws FeatureError for the first failed check. */
  decode(data) {
    const bytes = asBytes(data);
    const header = peekHeader(bytes);
    if (header.modelId !== this.modelId) {
      fail("model_mismatch", `payload model id must be ${JSON.stringify(this.modelId)} ` +
        `(got ${JSON.stringify(header.modelId)}): the vector was made by another model`);
    }
    if (header.dim !== this.dim) {
      fail("dimension", `payload dimension must be ${this.dim} (got ${header.dim})`);
    }
    const code = DTYPES[header.dtype];
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    const offset = HEADER + this._id.length;
    const vector = new Float32Array(this.dim);
    for (let i = 0; i < this.dim; i++) {
      vector[i] = code === 1
        ? view.getFloat32(offset + 4 * i, true)
        : halfBitsToFloat(view.getUint16(offset + 2 * i, true));
    }
    checkValues(vector, "vector");
    return vector;
  }

  /** Float32Array carried by the text form. */
  decodeText(text) {
    return this.decode(base64urlDecode(text));
  }

  _coerce(vector) {
    if (vector === null || typeof vector !== "object" || typeof vector.length !== "number") {
      fail("type", `vector must be an array of ${this.dim} numbers (got ${typeof vector})`);
    }
    for (let i = 0; i < vector.length; i++) {
      const x = vector[i];
      if (x !== null && typeof x === "object" && typeof x.length === "number") {
        fail("shape", `vector must be one flat array of ${this.dim} numbers (element ${i} is ` +
          "an array): encode one vector per payload");
      }
      if (typeof x !== "number") {
        fail("type", `vector must hold numbers (got ${typeof x} at element ${i})`);
      }
    }
    if (vector.length !== this.dim) {
      fail("dimension", `vector dimension must be ${this.dim} for model ` +
        `${JSON.stringify(this.modelId)} (got ${vector.length})`);
    }
    return Float32Array.from(vector); // as Python: the vector is float32 before the wire dtype
  }
}

function dtypeCode(dtype) {
  const code = Object.hasOwn(DTYPES, dtype) ? DTYPES[dtype] : undefined;
  if (code === undefined) fail("dtype", `dtype must be 'float32' or 'float16' (got ${dtype})`);
  return code;
}

/** L2-normalize a vector into a new Float32Array (norm computed in doubles). */
export function l2normalize(vector) {
  let sum = 0;
  for (let i = 0; i < vector.length; i++) sum += vector[i] * vector[i];
  const norm = Math.sqrt(sum);
  const out = new Float32Array(vector.length);
  if (!(norm > 0) || !Number.isFinite(norm)) return out.fill(NaN);
  for (let i = 0; i < vector.length; i++) out[i] = vector[i] / norm;
  return out;
}
