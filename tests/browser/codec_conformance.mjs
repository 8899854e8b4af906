// Runs clients/web/codec.js on every entry of tests/vectors/codec_vectors.json and prints one
// JSON object {name: {ok, detail}} (plus a few extra checks under "extra:*"); the pytest
// test tests/browser/test_codec_js.py asserts on each entry.
//
//   node tests/browser/codec_conformance.mjs tests/vectors/codec_vectors.json
import { readFileSync } from "node:fs";

import {
  FeatureCodec, base64urlDecode, base64urlEncode, crc32, halfBitsToFloat,
} from "../../clients/web/codec.js";

const file = process.argv[2];
const spec = JSON.parse(readFileSync(file, "utf8"));
const results = {};

const fromHex = (hex) => Uint8Array.from(hex.match(/../g) ?? [], (h) => parseInt(h, 16));
const toHex = (bytes) => Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
const sameFloat32 = (got, want) =>
  got.length === want.length && want.every((w, i) => got[i] === Math.fround(w));

function codeOf(fn) {
  try {
    fn();
    return "accepted";
  } catch (error) {
    return error.code ?? `exception without code: ${error}`;
  }
}

function check(name, fn) {
  try {
    const problems = fn();
    results[name] = { ok: problems.length === 0, detail: problems.join("; ") };
  } catch (error) {
    results[name] = { ok: false, detail: `threw ${error.code ?? ""} ${error.message}` };
  }
}

// Raw elements of a structurally sound payload, without the value checks.
function rawElements(bytes) {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const dtype = bytes[5];
  const dim = view.getUint16(6, true);
  const offset = 9 + bytes[8];
  return Array.from({ length: dim }, (_, i) => (dtype === 1
    ? view.getFloat32(offset + 4 * i, true)
    : halfBitsToFloat(view.getUint16(offset + 2 * i, true))));
}

for (const v of spec.vectors) {
  check(v.name, () => {
    const codec = new FeatureCodec(v.model_id, v.dim);
    const problems = [];
    if (v.expect === "ok") {
      if (!sameFloat32(codec.decode(fromHex(v.hex)), v.vector)) problems.push("decode(hex) vector");
      if (!sameFloat32(codec.decodeText(v.text), v.vector)) problems.push("decodeText vector");
      const hex = toHex(codec.encode(v.vector, { dtype: v.dtype }));
      if (hex !== v.hex) problems.push(`encode gave ${hex.slice(0, 80)}...`);
      const text = codec.encodeText(v.vector, { dtype: v.dtype });
      if (text !== v.text) problems.push(`encodeText gave ${text.slice(0, 60)}...`);
      if (toHex(base64urlDecode(v.text)) !== v.hex) problems.push("base64urlDecode");
      return problems;
    }
    if (v.form === "text") {
      const got = codeOf(() => codec.decodeText(v.text));
      if (got !== v.code) problems.push(`decodeText: expected ${v.code}, got ${got}`);
      return problems;
    }
    const bytes = fromHex(v.hex);
    const got = codeOf(() => codec.decode(bytes));
    if (got !== v.code) problems.push(`decode: expected ${v.code}, got ${got}`);
    const gotText = codeOf(() => codec.decodeText(base64urlEncode(bytes)));
    if (gotText !== v.code) problems.push(`decodeText: expected ${v.code}, got ${gotText}`);
    if (v.code === "non_finite" || v.code === "norm") {
      // Encoders refuse exactly what decoders refuse, with the same code.
      const dtype = bytes[5] === 1 ? "float32" : "float16";
      const enc = codeOf(() => codec.encode(rawElements(bytes), { dtype }));
      if (enc !== v.code) problems.push(`encode: expected ${v.code}, got ${enc}`);
    }
    return problems;
  });
}

check("extra:crc32-check-value", () => {
  const ascii = Uint8Array.from("123456789", (c) => c.charCodeAt(0));
  return crc32(ascii) === 0xcbf43926 ? [] : [`crc32 = ${crc32(ascii).toString(16)}`];
});
check("extra:encoder-refusals", () => {
  const codec = new FeatureCodec("demo-4", 4);
  const cases = [
    [() => codec.encode([0.5, 0.5, 0.5]), "dimension"],
    [() => codec.encode([[0.5, 0.5, 0.5, 0.5]]), "shape"],
    [() => codec.encode(["0.5", 0.5, 0.5, 0.5]), "type"],
    [() => codec.encode(null), "type"],
    [() => codec.encode([0, 0, 0, 0]), "norm"],
    [() => codec.encode([1e5, 0, 0, 0], { dtype: "float16" }), "non_finite"],
    [() => codec.encode([0.5, -0.5, 0.5, -0.5], { dtype: "float64" }), "dtype"],
    [() => new FeatureCodec("bad id", 4), "model_id"],
    [() => new FeatureCodec("x".repeat(65), 4), "model_id"],
    [() => new FeatureCodec("demo", 2049), "dimension"],
    [() => new FeatureCodec("demo", 1.5), "dimension"],
  ];
  return cases.map(([fn, want], i) => [codeOf(fn), want, i])
    .filter(([got, want]) => got !== want)
    .map(([got, want, i]) => `case ${i}: expected ${want}, got ${got}`);
});
check("extra:round-trip-random", () => {
  const problems = [];
  let seed = 42;
  const rand = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31) * 2 - 1;
  for (let trial = 0; trial < 200; trial++) {
    const dim = 1 + (trial % 300);
    const v = Array.from({ length: dim }, rand);
    const norm = Math.hypot(...v);
    const unit = v.map((x) => x / norm);
    const codec = new FeatureCodec("ffem-am-test", dim);
    for (const dtype of ["float32", "float16"]) {
      const back = codec.decodeText(codec.encodeText(unit, { dtype }));
      const tol = dtype === "float32" ? 1e-7 : 2 ** -11;
      if (!unit.every((x, i) => Math.abs(back[i] - x) <= tol * Math.max(Math.abs(x), 2 ** -14))) {
        problems.push(`trial ${trial} ${dtype}`);
      }
    }
  }
  return problems.slice(0, 3);
});

process.stdout.write(`${JSON.stringify(results)}\n`);
