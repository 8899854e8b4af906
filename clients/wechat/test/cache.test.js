// The model cache (src/models.js, from the built bundle) on the mocked user file system, with
// a downloader that serves clients/web/vendor the way `faceid-sdk serve --static` does, and
// can be told to lie: another model id, a missing file, a short shard.
const fs = require("fs");
const path = require("path");
const { LIB, VENDOR, requireBuilt, vendorModel } = require("./helpers/paths");
const { World, USER } = require("./helpers/wx");

requireBuilt();
const faceid = require(LIB);
const BASE = "https://faceid.test/vendor/";

let world;
beforeEach(() => { world = new World(); });
afterEach(() => world.cleanup());

/** wx.downloadFile over VENDOR. `hosted`: the model id its FFEM-AM model.json claims;
 * `missing`: paths answered 404; `short`: paths served one byte short. */
function downloader({ hosted, missing = [], short = [] } = {}) {
  const calls = [];
  const download = (o) => {
    const rel = o.url.slice(BASE.length);
    calls.push(rel);
    let data = fs.existsSync(path.join(VENDOR, rel)) && !missing.includes(rel)
      ? fs.readFileSync(path.join(VENDOR, rel)) : Buffer.from('{"detail":"Not Found"}');
    const status = fs.existsSync(path.join(VENDOR, rel)) && !missing.includes(rel) ? 200 : 404;
    if (hosted && rel === "ffem_am/model.json") {
      const model = JSON.parse(data);
      model.userDefinedMetadata.faceid.model_id = hosted;
      data = Buffer.from(JSON.stringify(model));
    }
    if (short.includes(rel)) data = data.subarray(0, data.length - 1);
    const target = world.real(o.filePath);
    fs.mkdirSync(path.dirname(target), { recursive: true });
    fs.writeFileSync(target, data);
    setTimeout(() => o.success({ statusCode: status, filePath: o.filePath }), 0);
  };
  return { calls, download };
}

const ensure = (modelId, d) => faceid.ensureModels({ modelId, base: BASE,
  fs: world.fsManager(), download: d.download, root: USER });
const id = () => vendorModel().model_id;
const cached = () => fs.readdirSync(world.real(`${USER}/faceid-models`)).sort();

test("fetched once: the next start reads the phone's copy and downloads nothing", async () => {
  const first = downloader();
  const a = await ensure(id(), first);
  expect(a.source).toBe("download");
  expect(first.calls[0]).toBe("ffem_am/model.json");
  expect(first.calls).toHaveLength(6);
  const want = Object.fromEntries(Object.keys(a.files).map((p) => [p, fs.statSync(path.join(VENDOR, p)).size]));
  expect(a.files).toEqual(want);
  const second = downloader();
  const b = await ensure(id(), second);
  expect(b).toMatchObject({ source: "cache", dir: a.dir });
  expect(second.calls).toEqual([]);
});

test("a damaged or unfinished cache is not trusted: fetched again", async () => {
  const { dir } = await ensure(id(), downloader());
  const real = world.real(dir);
  const shard = path.join(real, "detector", "group1-shard1of1.bin");
  fs.truncateSync(shard, 1000); // the phone cleared part of it, or a write was cut
  const again = downloader();
  expect((await ensure(id(), again)).source).toBe("download");
  expect(again.calls).toHaveLength(6);
  expect(fs.statSync(shard).size).toBe(fs.statSync(path.join(VENDOR, "detector", "group1-shard1of1.bin")).size);
  fs.rmSync(path.join(real, "complete.json")); // a download that never finished
  expect((await ensure(id(), downloader())).source).toBe("download");
});

test("a new model id on the server: the new model is fetched and the old one removed", async () => {
  const old = "ffem-am-128-0123456789ab";
  await ensure(old, downloader({ hosted: old }));
  expect(cached()).toEqual([old]);
  const now = await ensure(id(), downloader());
  expect(now.source).toBe("download");
  expect(cached()).toEqual([id()]);
});

test("the server hosts another model than its gallery's: refused after one small file, nothing kept", async () => {
  const d = downloader({ hosted: "ffem-am-128-ffffffffffff" });
  await expect(ensure(id(), d)).rejects.toMatchObject({ code: "model-mismatch",
    serverModelId: id(), modelId: "ffem-am-128-ffffffffffff" });
  expect(d.calls).toEqual(["ffem_am/model.json"]);
  expect(cached()).toEqual([]);
  expect(faceid.errorState(await ensure(id(), d).catch((e) => e))[0]).toBe("model-mismatch");
});

test("a missing file or a short shard is an error, and nothing is cached", async () => {
  await expect(ensure(id(), downloader({ missing: ["landmarks/model.json"] })))
    .rejects.toMatchObject({ code: "model-fetch", message: expect.stringMatching(/HTTP 404/) });
  expect(cached()).toEqual([]);
  await expect(ensure(id(), downloader({ short: ["ffem_am/group1-shard1of1.bin"] })))
    .rejects.toMatchObject({ code: "model-fetch", message: expect.stringMatching(/bytes of weights/) });
  expect(cached()).toEqual([]);
  await expect(ensure("../escape", downloader())).rejects.toMatchObject({ code: "model-fetch" });
});

test("weightBytes counts quantized weights at their stored size", () => {
  for (const name of ["ffem_am", "detector", "landmarks"]) {
    const model = JSON.parse(fs.readFileSync(path.join(VENDOR, name, "model.json")));
    const shards = model.weightsManifest.flatMap((g) => g.paths)
      .reduce((n, p) => n + fs.statSync(path.join(VENDOR, name, p)).size, 0);
    expect(faceid.weightBytes(model.weightsManifest.flatMap((g) => g.weights))).toBe(shards);
  }
});
