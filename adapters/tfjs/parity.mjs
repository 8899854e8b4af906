// Runs the FFEM-AM TF.js graph model in Node with the wasm backend (the browser's fastest
// backend) on the golden faces, so `faceid-sdk parity` can compare it with TensorFlow.
//
//   node parity.mjs --model DIR/model.json --faces tests/golden/faces.npy --out OUT.f32 [--repeats N]
//
// Writes the (n, dim) outputs to OUT.f32 as little-endian float32 and prints one JSON line:
// {backend, shape, metadata, ms_per_face: {batch1, batch32}}. Pixels are normalized as in
// faceid_sdk/alignment.py (x / 127.5 - 1): the same code path the browser client must follow.
import { readFileSync, writeFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { createRequire } from "node:module";
import { parseArgs } from "node:util";

import * as tf from "@tensorflow/tfjs";
import { setWasmPaths } from "@tensorflow/tfjs-backend-wasm";

const require = createRequire(import.meta.url);

function fail(message) {
  process.stderr.write(`parity.mjs: ${message}\n`);
  process.exit(2);
}

// A minimal .npy reader: version 1-3 headers, little-endian uint8, C order.
function readNpy(path) {
  const buf = readFileSync(path);
  if (buf.readUInt8(0) !== 0x93 || buf.toString("latin1", 1, 6) !== "NUMPY") {
    fail(`--faces must be a .npy file (got ${path})`);
  }
  const major = buf.readUInt8(6);
  const headerLen = major === 1 ? buf.readUInt16LE(8) : buf.readUInt32LE(8);
  const offset = major === 1 ? 10 : 12;
  const header = buf.toString("latin1", offset, offset + headerLen);
  const descr = /'descr':\s*'([^']+)'/.exec(header)?.[1];
  const fortran = /'fortran_order':\s*(True|False)/.exec(header)?.[1];
  const shape = /'shape':\s*\(([^)]*)\)/.exec(header)?.[1]
    .split(",").map((s) => s.trim()).filter(Boolean).map(Number);
  if (descr !== "|u1" || fortran !== "False" || shape?.length !== 4 || shape[3] !== 3) {
    fail(`--faces must be uint8 (n, size, size, 3) in C order (got ${header.trim()})`);
  }
  const start = offset + headerLen;
  return { data: new Uint8Array(buf.buffer, buf.byteOffset + start, buf.length - start), shape };
}

// tf.loadGraphModel speaks HTTP; in Node we hand it the files through an IOHandler.
function fileHandler(modelJson) {
  const base = dirname(modelJson);
  return {
    async load() {
      const model = JSON.parse(readFileSync(modelJson, "utf8"));
      const weightSpecs = [];
      const parts = [];
      for (const group of model.weightsManifest) {
        weightSpecs.push(...group.weights);
        for (const p of group.paths) {
          const b = readFileSync(join(base, p));
          parts.push(b.buffer.slice(b.byteOffset, b.byteOffset + b.length));
        }
      }
      const total = parts.reduce((n, p) => n + p.byteLength, 0);
      const weightData = new Uint8Array(total);
      let at = 0;
      for (const p of parts) {
        weightData.set(new Uint8Array(p), at);
        at += p.byteLength;
      }
      return {
        modelTopology: model.modelTopology,
        format: model.format,
        generatedBy: model.generatedBy,
        convertedBy: model.convertedBy,
        signature: model.signature,
        userDefinedMetadata: model.userDefinedMetadata,
        modelInitializer: model.modelInitializer,
        weightSpecs,
        weightData: weightData.buffer,
      };
    },
  };
}

function embed(model, faces, start, count, size) {
  return tf.tidy(() => {
    const pixels = faces.data.subarray(start * size * size * 3, (start + count) * size * size * 3);
    const x = tf.tensor4d(pixels, [count, size, size, 3], "int32").toFloat().div(127.5).sub(1);
    return model.predict(x);
  });
}

function msPerFace(model, faces, batch, repeats, size) {
  const n = faces.shape[0];
  const x = tf.tidy(() => {
    const all = tf.tensor4d(faces.data, [n, size, size, 3], "int32").toFloat().div(127.5).sub(1);
    const idx = tf.tensor1d(Array.from({ length: batch }, (_, i) => i % n), "int32");
    return tf.gather(all, idx);
  });
  model.predict(x).dispose(); // warm-up: kernel set-up and allocation for this shape
  const times = [];
  for (let r = 0; r < repeats; r++) {
    const t0 = performance.now();
    const y = model.predict(x);
    y.dataSync();
    y.dispose();
    times.push((performance.now() - t0) / batch);
  }
  x.dispose();
  times.sort((a, b) => a - b);
  return times[Math.floor(times.length / 2)];
}

async function main() {
  const { values } = parseArgs({
    options: {
      model: { type: "string" },
      faces: { type: "string" },
      out: { type: "string" },
      repeats: { type: "string", default: "0" },
      backend: { type: "string", default: "wasm" },
    },
  });
  if (!values.model || !values.faces || !values.out) {
    fail("usage: node parity.mjs --model DIR/model.json --faces FACES.npy --out OUT.f32 [--repeats N]");
  }
  if (values.backend === "wasm") {
    const dist = dirname(require.resolve("@tensorflow/tfjs-backend-wasm"));
    setWasmPaths(dist + "/");
  }
  if (!(await tf.setBackend(values.backend))) fail(`backend ${values.backend} did not initialize`);
  await tf.ready();

  const model = await tf.loadGraphModel(fileHandler(resolve(values.model)));
  const faces = readNpy(resolve(values.faces));
  const [n, size] = faces.shape;
  const y = embed(model, faces, 0, n, size);
  const out = y.dataSync();
  writeFileSync(values.out, Buffer.from(out.buffer, out.byteOffset, out.byteLength));

  const repeats = Number(values.repeats);
  const report = {
    backend: tf.getBackend(),
    tfjs: tf.version.tfjs,
    shape: y.shape,
    metadata: model.metadata?.faceid ?? null,
  };
  y.dispose();
  if (repeats > 0) {
    report.ms_per_face = {
      batch1: msPerFace(model, faces, 1, repeats, size),
      batch32: msPerFace(model, faces, 32, Math.max(1, Math.ceil(repeats / 4)), size),
    };
  }
  process.stdout.write(JSON.stringify(report) + "\n");
}

main().catch((err) => fail(err?.stack ?? String(err)));
