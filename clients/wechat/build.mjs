// Builds the mini-program's library and measures the packages.
//
//   node build.mjs            miniprogram/lib/faceid.js: src/index.js bundled (CommonJS,
//                             minified) with the web client's modules it imports, from
//                             clients/web itself (one source, no copies), and TF.js
//   node build.mjs --webgl    the same with TF.js's webgl backend, for the TF.js plugin
//   node build.mjs --sizes    also measure both package variants; writes build/sizes.json
//
// miniprogram/lib/ and build/ are generated (gitignored).
import * as esbuild from "esbuild";
import { gzipSync } from "node:zlib";
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

const HERE = path.dirname(fileURLToPath(import.meta.url));
const APP = path.join(HERE, "miniprogram");
const LIB = path.join(APP, "lib", "faceid.js");
const VENDOR = path.join(HERE, "..", "web", "vendor");
/** WeChat's limit for the main package and for each subpackage ("2M" = 2048 KiB). */
export const PACKAGE_LIMIT = 2 * 1024 * 1024;
const args = new Set(process.argv.slice(2));

/** TF.js's Node platform imports `util`; the browser field would leave it empty. */
const shims = {
  name: "shims",
  setup(build) {
    build.onResolve({ filter: /^util$/ }, () => ({ path: path.join(HERE, "src", "shims", "util.js") }));
  },
};

async function bundle(entry, outfile) {
  const result = await esbuild.build({
    entryPoints: [path.join(HERE, "src", entry)],
    outfile,
    bundle: true,
    format: "cjs",
    platform: "browser",
    // What WeChat's JavaScript engines run without transpiling (DevTools skips its own ES6
    // compilation for files this big; project.config.json also excludes lib/ from it).
    target: "es2017",
    minify: true,
    legalComments: "eof",
    metafile: true,
    // TF.js looks for its global object as window, global, process or self; the WeChat runtime
    // may have none of these, every engine it runs on has globalThis.
    define: { global: "globalThis" },
    plugins: [shims],
    logLevel: "warning",
  });
  const inputs = Object.values(result.metafile.outputs)[0].inputs;
  const parts = {};
  for (const [file, { bytesInOutput }] of Object.entries(inputs)) {
    const m = file.match(/node_modules\/(@[^/]+\/[^/]+|[^/]+)/);
    const key = m ? m[1] : file.startsWith("../web/") ? "clients/web (codec, align, resample, face_core, api)" : "src (mini-program adapters)";
    parts[key] = (parts[key] ?? 0) + bytesInOutput;
  }
  return parts;
}

function walk(dir, skip = () => false) {
  const out = [];
  for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, entry.name);
    if (skip(p)) continue;
    if (entry.isDirectory()) out.push(...walk(p, skip));
    else out.push(p);
  }
  return out;
}

/** The main package as WeChat counts it: every file under miniprogram/. */
export function mainPackage() {
  const files = walk(APP).map((p) => ({ file: path.relative(APP, p), bytes: fs.statSync(p).size }));
  return { bytes: files.reduce((a, f) => a + f.bytes, 0), files };
}

/** Bytes of each model folder in clients/web/vendor (what the phone downloads and caches). */
function modelBytes() {
  const out = {};
  for (const name of ["ffem_am", "detector", "landmarks"]) {
    const dir = path.join(VENDOR, name);
    if (!fs.existsSync(dir)) return null;
    out[name] = walk(dir).reduce((a, p) => a + fs.statSync(p).size, 0);
  }
  return out;
}

/** How many subpackages of at most `limit` bytes the models need, split into chunks at any
 * byte (weight shards can be cut anywhere: the loader concatenates them), first fit. */
export function subpackagesFor(sizes, limit = PACKAGE_LIMIT, overhead = 4096) {
  const room = limit - overhead; // the subpackage's own page/JSON files
  const total = Object.values(sizes).reduce((a, b) => a + b, 0);
  return { bytes: total, subpackages: Math.ceil(total / room) };
}

async function main() {
  fs.mkdirSync(path.dirname(LIB), { recursive: true });
  const webgl = args.has("--webgl");
  const parts = await bundle(webgl ? "index_webgl.js" : "index.js", LIB);
  const libBytes = fs.statSync(LIB).size;
  console.log(`built ${path.relative(HERE, LIB)} (${webgl ? "cpu + webgl" : "cpu"} backend): ` +
    `${(libBytes / 1024).toFixed(0)} KiB`);
  if (!args.has("--sizes")) return;

  const other = path.join(HERE, "build", webgl ? "faceid-cpu.js" : "faceid-webgl.js");
  fs.mkdirSync(path.dirname(other), { recursive: true });
  const otherParts = await bundle(webgl ? "index.js" : "index_webgl.js", other);
  const [cpuFile, webglFile] = webgl ? [other, LIB] : [LIB, other];
  const main = mainPackage();
  const libNow = main.files.find((f) => f.file === "lib/faceid.js").bytes;
  const sizeOf = (f) => fs.statSync(f).size;
  const models = modelBytes();
  const report = {
    limit_bytes: PACKAGE_LIMIT,
    bundle: {
      cpu: { bytes: sizeOf(cpuFile), gzip: gzipSync(fs.readFileSync(cpuFile)).length,
        parts: webgl ? otherParts : parts },
      webgl: { bytes: sizeOf(webglFile), gzip: gzipSync(fs.readFileSync(webglFile)).length,
        parts: webgl ? parts : otherParts },
    },
    main_package: {
      fetch_cpu: main.bytes - libNow + sizeOf(cpuFile),
      fetch_webgl: main.bytes - libNow + sizeOf(webglFile),
      other_files: main.bytes - libNow,
    },
    models,
  };
  if (models) {
    const total = Object.values(models).reduce((a, b) => a + b, 0);
    report.fetch_variant = { downloaded_once_bytes: total, cached_on_phone_bytes: total };
    report.subpackage_variant = {
      raw_shards: subpackagesFor(models),
      // .bin is not on the mini-program upload whitelist: base64 in .js/.json costs 4/3.
      base64_text: subpackagesFor(Object.fromEntries(Object.entries(models)
        .map(([k, v]) => [k, Math.ceil(v / 3) * 4]))),
      ffem_am_fits_one_subpackage: models.ffem_am <= PACKAGE_LIMIT,
    };
  }
  fs.writeFileSync(path.join(HERE, "build", "sizes.json"), JSON.stringify(report, null, 2) + "\n");
  const kib = (n) => `${(n / 1024).toFixed(0)} KiB`;
  console.log(`main package, fetch-and-cache, cpu backend:  ${kib(report.main_package.fetch_cpu)} of ${kib(PACKAGE_LIMIT)}`);
  console.log(`main package, fetch-and-cache, +webgl:       ${kib(report.main_package.fetch_webgl)}`);
  console.log(`  of which pages, app, config:               ${kib(report.main_package.other_files)}`);
  for (const [k, v] of Object.entries(report.bundle.cpu.parts)) console.log(`  bundle (cpu) ${k}: ${kib(v)}`);
  if (models) {
    for (const [k, v] of Object.entries(models)) console.log(`model ${k}: ${kib(v)}`);
    const s = report.subpackage_variant;
    console.log(`fetch variant: ${kib(report.fetch_variant.downloaded_once_bytes)} downloaded once, cached`);
    console.log(`subpackage variant: ${kib(s.raw_shards.bytes)} in >= ${s.raw_shards.subpackages} subpackages ` +
      `(raw), ${kib(s.base64_text.bytes)} in >= ${s.base64_text.subpackages} (base64 text); ` +
      `FFEM-AM fits one subpackage: ${s.ffem_am_fits_one_subpackage}`);
  } else {
    console.log("models: clients/web/vendor is missing (make web-assets)");
  }
}

await main();
