// The built library and the package: it runs where WeChat runs it (no window, document,
// process, global, TextEncoder or fetch), it is the web client's code (one source), the main
// package stays within WeChat's 2 MB, and the pages are what app.json says.
const { execFileSync } = require("child_process");
const fs = require("fs");
const path = require("path");
const vm = require("vm");
const { APP, LIB, PERSON, VENDOR, WEB, WECHAT, requireBuilt, vendorModel } = require("./helpers/paths");
const images = require("./helpers/images");

requireBuilt();
const faceid = require(LIB);
faceid.tf.env().set("IS_TEST", true);

/** `bytes` as an ArrayBuffer of the realm running this function's source. */
const COPY = "(bytes) => { const b = new ArrayBuffer(bytes.length); new Uint8Array(b).set(bytes); return b; }";

/** A WeChat-like host over VENDOR (an in-memory user file system, canned JSON answers);
 * `arrayBuffer` copies bytes into the realm the bundle runs in (WeChat has one realm). */
function host(arrayBuffer, answers) {
  const files = new Map();
  const file = (p) => {
    if (!files.has(p)) throw Object.assign(new Error(`no such file ${p}`), { errMsg: "fail" });
    return files.get(p);
  };
  const fsm = {
    accessSync: (p) => { if (!files.has(p) && ![...files.keys()].some((k) => k.startsWith(p + "/"))) throw new Error(p); },
    mkdirSync: () => {},
    rmdirSync: (p) => { for (const k of [...files.keys()]) if (k.startsWith(p + "/")) files.delete(k); },
    readdirSync: (p) => [...new Set([...files.keys()].filter((k) => k.startsWith(p + "/"))
      .map((k) => k.slice(p.length + 1).split("/")[0]))],
    readFileSync: (p, enc) => {
      const data = file(p);
      return enc ? data.toString(enc) : arrayBuffer(data);
    },
    writeFileSync: (p, data) => files.set(p, Buffer.from(data)),
    statSync: (p) => ({ size: file(p).length }),
  };
  return {
    env: { USER_DATA_PATH: "wxfile://usr" },
    getFileSystemManager: () => fsm,
    request: (o) => setTimeout(() => o.success({ statusCode: 200,
      data: JSON.stringify(answers[`${o.method} ${new URL(o.url).pathname}`]) }), 0),
    downloadFile: (o) => {
      files.set(o.filePath, fs.readFileSync(path.join(VENDOR, new URL(o.url).pathname.slice(8))));
      setTimeout(() => o.success({ statusCode: 200, filePath: o.filePath }), 0);
    },
  };
}

test("the bundle runs the whole pipeline in a bare JavaScript realm, as in WeChat's runtime, with the vectors of the jsdom run", async () => {
  const realm = vm.createContext({ setTimeout, clearTimeout, console: { log() {}, warn() {}, error() {} } });
  const bare = vm.runInContext("[typeof window, typeof document, typeof process, typeof global, " +
    "typeof self, typeof TextEncoder, typeof atob, typeof fetch, typeof performance]", realm);
  expect(bare.every((t) => t === "undefined")).toBe(true);
  const module = vm.runInContext("({ exports: {} })", realm);
  vm.runInContext(`(function (module, exports) {${fs.readFileSync(LIB, "utf8")}\n})`, realm)(module, module.exports);
  const wechat = module.exports;
  const meta = vendorModel();
  const answers = { "GET /api/v1/model": { model_id: meta.model_id, dim: Number(meta.dim), threshold: 0.8,
    challenge_required: false, max_enroll_features: 16 } };
  const session = await wechat.startSession({ server: "https://faceid.test",
    api: host(vm.runInContext(COPY, realm), answers) });
  expect(wechat.tf.env().platformName).toBe("wechat"); // the bundle's own platform, not a browser's
  expect(session.backend).toBe("cpu");
  expect(session.models.source).toBe("download");
  const photo = images.decode(PERSON[0]);
  const data = new (vm.runInContext("Uint8ClampedArray", realm))(photo.data);
  const result = await session.pipeline.process({ data, width: photo.width, height: photo.height, channels: 4 });
  expect(result.status).toBe("ok");
  const text = session.codec.encodeText(result.vector);

  // The same photo through the jsdom copy of the bundle (TF.js on its browser platform).
  faceid.resetSession();
  const jsdomSession = await faceid.startSession({ server: "https://faceid.test",
    api: host(eval(COPY), answers) });
  expect(faceid.tf.env().platformName).toBe("browser");
  const mine = await jsdomSession.pipeline.process({ data: new Uint8ClampedArray(photo.data),
    width: photo.width, height: photo.height, channels: 4 });
  const diff = Math.max(...Array.from(mine.vector, (v, i) => Math.abs(v - result.vector[i])));
  expect(diff).toBeLessThan(1e-5);
  expect(new faceid.FeatureCodec(meta.model_id, Number(meta.dim)).decodeText(text)).toHaveLength(Number(meta.dim));
  faceid.resetSession();
});

test("one source: the bundle carries clients/web's modules and no copy of them is kept here", () => {
  const bundle = fs.readFileSync(LIB, "utf8");
  // Text from clients/web's face_core.js, codec.js and api.js that minification keeps.
  expect(bundle).toContain("the FFEM-AM model.json carries no faceid metadata: re-run prepare.py");
  expect(bundle).toContain("must be L2-normalized, norm 1");
  expect(bundle).toContain("ApiError");
  const web = ["codec.js", "align.js", "resample.js", "face_core.js", "api.js", "pipeline.js"];
  const tracked = execFileSync("git", ["ls-files", "--cached", "--others", "--exclude-standard"],
    { cwd: WECHAT, encoding: "utf8" }).split("\n").filter(Boolean);
  expect(tracked.filter((f) => web.includes(path.basename(f)))).toEqual([]);
  // No file of ours holds a function of theirs (the tests name them, so they are not searched).
  const signatures = { "codec.js": ["export function crc32", "export class FeatureCodec"],
    "resample.js": ["export function warpAffine"], "face_core.js": ["export function decodeDetections"],
    "align.js": ["export function estimateSimilarity"] };
  for (const [file, names] of Object.entries(signatures)) {
    const theirs = fs.readFileSync(path.join(WEB, file), "utf8");
    for (const name of names) expect([file, theirs.includes(name)]).toEqual([file, true]);
  }
  for (const f of tracked.filter((f) => /\.m?js$/.test(f) && !f.startsWith("test/"))) {
    const text = fs.readFileSync(path.join(WECHAT, f), "utf8");
    for (const name of Object.values(signatures).flat()) {
      expect([f, name, text.includes(name)]).toEqual([f, name, false]);
    }
  }
  expect(tracked).not.toContain("miniprogram/lib/faceid.js"); // built, never committed
});

test("sizes: the main package is within WeChat's 2 MB with either backend; the models are not", () => {
  execFileSync(process.execPath, [path.join(WECHAT, "build.mjs"), "--sizes"], { cwd: WECHAT });
  const sizes = JSON.parse(fs.readFileSync(path.join(WECHAT, "build", "sizes.json"), "utf8"));
  const limit = 2 * 1024 * 1024;
  expect(sizes.limit_bytes).toBe(limit);
  expect(sizes.main_package.fetch_cpu).toBeLessThanOrEqual(limit);
  expect(sizes.main_package.fetch_webgl).toBeLessThanOrEqual(limit);
  expect(sizes.bundle.webgl.bytes).toBeGreaterThan(sizes.bundle.cpu.bytes);
  // What WeChat would upload as the main package: every file under miniprogram/.
  const walk = (d) => fs.readdirSync(d, { withFileTypes: true })
    .flatMap((e) => (e.isDirectory() ? walk(path.join(d, e.name)) : [fs.statSync(path.join(d, e.name)).size]));
  expect(walk(APP).reduce((a, b) => a + b, 0)).toBeLessThanOrEqual(limit);
  const models = Object.values(sizes.models).reduce((a, b) => a + b, 0);
  expect(models).toBeGreaterThan(limit); // hence fetched and cached (or several subpackages)
  expect(sizes.subpackage_variant.raw_shards.subpackages).toBeGreaterThanOrEqual(Math.ceil(models / limit));
});

test("app.json: both pages exist as Component-built pages with all four files, in the tab bar", () => {
  const app = JSON.parse(fs.readFileSync(path.join(APP, "app.json"), "utf8"));
  expect(app.pages).toEqual(["pages/identify/index", "pages/enroll/index"]);
  for (const page of app.pages) {
    for (const ext of ["js", "json", "wxml", "wxss"]) {
      expect(fs.existsSync(path.join(APP, `${page}.${ext}`))).toBe(true);
    }
    expect(JSON.parse(fs.readFileSync(path.join(APP, `${page}.json`), "utf8")).usingComponents).toEqual({});
    expect(fs.readFileSync(path.join(APP, `${page}.wxml`), "utf8")).toMatch(/<camera [^>]*frame-size=/);
  }
  expect(app.tabBar.list.map((t) => t.pagePath)).toEqual(app.pages);
  const project = JSON.parse(fs.readFileSync(path.join(WECHAT, "project.config.json"), "utf8"));
  expect(fs.existsSync(path.join(WECHAT, project.miniprogramRoot, "app.json"))).toBe(true);
  // No key or secret in the code package: the key comes at launch (app.js).
  expect(fs.readFileSync(path.join(APP, "config.js"), "utf8")).not.toMatch(/fidk_/);
});

test("wx.request: JSON strings with the Bearer key; errors become ApiError", async () => {
  const sent = [];
  const api = faceid.createWxApi("https://s/api/v1", { key: "fidk_test", request: (o) => {
    sent.push(o);
    const answer = sent.length === 1 ? { statusCode: 200, data: '{"recognised":false,"reason":"no_match"}' }
      : sent.length === 2 ? { statusCode: 409, data: '{"error":{"code":"model_mismatch","message":"m"}}' }
        : { statusCode: 502, data: "<html>bad gateway</html>" };
    setTimeout(() => (sent.length === 4 ? o.fail({ errMsg: "request:fail timeout" }) : o.success(answer)), 0);
  } });
  expect(await api.identify("AAAA")).toEqual({ recognised: false, reason: "no_match" });
  expect(sent[0]).toMatchObject({ url: "https://s/api/v1/identify", method: "POST",
    data: '{"features":"AAAA"}', header: { Authorization: "Bearer fidk_test",
      "Content-Type": "application/json" } });
  const mismatch = await api.enroll("a", ["AAAA"]).catch((e) => e);
  expect(mismatch).toMatchObject({ name: "ApiError", status: 409, code: "model_mismatch" });
  expect(faceid.errorState(mismatch)[0]).toBe("model-mismatch");
  expect(await api.model().catch((e) => e)).toMatchObject({ status: 502, code: "http_502" });
  expect(sent[2].data).toBeUndefined();
  expect(await api.model().catch((e) => e)).toMatchObject({ status: 0, code: "network" });
});

test("the states say what the web page says", () => {
  const app = fs.readFileSync(path.join(WEB, "app.js"), "utf8");
  const face = { faces: [1, 2], face: { eyeDistance: 12.4 } };
  const ours = [
    faceid.MESSAGES["no-face"](face),
    faceid.MESSAGES["several-faces"](face).replace(/^2/, ""),
    faceid.MESSAGES["too-small"](face).split(": ").pop(),
    ...faceid.identifyState({ recognised: false, reason: "ambiguous" }).slice(1),
    faceid.identifyState({ recognised: false, reason: "empty_gallery" })[1],
    faceid.identifyState({ recognised: false, reason: "no_match" })[1],
    faceid.errorState(Object.assign(new faceid.ApiError(429, "rate_limited", "x")))[1],
  ];
  for (const text of ours) expect([text, app.includes(text)]).toEqual([text, true]);
  expect(faceid.identifyState({ recognised: true, identity: "p1", display_name: null }))
    .toEqual(["recognised", "Recognised as p1.", "Recognised as p1"]);
  expect(faceid.enrollState({ identity: "p1", created: false, templates_added: 1,
    conflicts: ["p2"] }, "")[0]).toBe("enrolled-conflict");
});

test("orient: EXIF orientations turn a photo upright", () => {
  // 2x1: red, green.
  const img = { data: new Uint8ClampedArray([255, 0, 0, 255, 0, 255, 0, 255]), width: 2, height: 1, channels: 4 };
  const px = (o) => Array.from({ length: o.width * o.height }, (_, i) => o.data[i * 4] ? "R" : "G").join("");
  expect(faceid.orient(img, "up")).toBe(img);
  expect([faceid.orient(img, "right").width, px(faceid.orient(img, "right"))]).toEqual([1, "RG"]);
  expect(px(faceid.orient(img, "left"))).toBe("GR");
  expect(px(faceid.orient(img, "down"))).toBe("GR");
  expect(px(faceid.orient(img, "up-mirrored"))).toBe("GR");
});
