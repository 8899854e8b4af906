// End to end: the enroll and identify pages rendered by miniprogram-simulate, their wx APIs
// mocked (test/helpers/wx.js) with wx.request and wx.downloadFile forwarded to a real
// `faceid-sdk serve` on loopback; the real models run (TF.js cpu backend) on real face photos,
// picked from the "album" or delivered as camera frames. Every request is inspected at the end.
const fs = require("fs");
const os = require("os");
const path = require("path");
const { APP, LIB, PERSON, STRANGER, requireBuilt } = require("./helpers/paths");
const { World, USER } = require("./helpers/wx");
const { startServer } = require("./helpers/server");
const { openPage, act, tap, type, stateOf, element, settle } = require("./helpers/pages");
const images = require("./helpers/images");
const { assertOnlyVectors } = require("./helpers/inspect");

requireBuilt();
const faceid = require(LIB);
const config = require(path.join(APP, "config.js"));

faceid.tf.env().set("IS_TEST", true); // no "install tfjs-node" banner

let server, world, tmp;
const frames = [images.cameraFrame(PERSON[2])];
const made = {};

beforeAll(async () => {
  // With --require-challenge: identify fetches a nonce first (POST /api/v1/challenge).
  server = await startServer({ args: ["--require-challenge"] });
  world = new World().install();
  world.storage.set("faceid-key", server.keys.device);
  config.server = server.url;
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), "wechat-photos-"));
  made.blank = images.writeJpeg(images.blank(320, 240, [120, 130, 140]), path.join(tmp, "blank.jpg"));
  made.pair = images.writeJpeg(images.sideBySide(images.decode(PERSON[1]), images.decode(STRANGER)),
    path.join(tmp, "pair.jpg"));
  // Eyes about 18 px apart (36 in the photo): under the 20 px the pipeline needs.
  made.small = images.writeJpeg(images.shrink(images.decode(PERSON[2]), 2), path.join(tmp, "small.jpg"));
  made.text = path.join(tmp, "notes.jpg");
  fs.writeFileSync(made.text, "not a photo at all\n");
  world.frames = frames;
});

afterAll(async () => {
  await server?.stop();
  world?.cleanup();
  if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
});

const posts = () => world.requests.filter((r) => r.method === "POST");
const cacheDir = (id) => world.real(`${USER}/faceid-models/${id}`);

test("the first start fetches the three models once and caches them by model id; the next start loads them from the phone", async () => {
  const page = await openPage("identify");
  expect(stateOf(page)).toEqual({ state: "ready",
    text: "Ready: identify a photo, or start the camera." });
  expect(element(page, "#choose").instance.data.disabled).toBe(false);
  // One JSON call (the model id) and six GET downloads of /vendor/ files, all answered 200.
  expect(world.requests.map((r) => `${r.method} ${new URL(r.url).pathname}`))
    .toEqual(["GET /api/v1/model"]);
  const got = world.downloads.map((d) => new URL(d.url).pathname.split("/").slice(2, 3)[0]);
  expect(got.sort()).toEqual(["detector", "detector", "ffem_am", "ffem_am", "landmarks", "landmarks"]);
  expect(world.downloads.every((d) => d.status === 200)).toBe(true);
  // The embedder's model.json came first: its model id is checked before any weights travel.
  expect(world.downloads[0].url).toMatch(/\/vendor\/ffem_am\/model\.json$/);
  const done = JSON.parse(fs.readFileSync(path.join(cacheDir(server.modelId), "complete.json")));
  expect(done.model_id).toBe(server.modelId);
  expect(Object.keys(done.files).sort()).toHaveLength(6);
  expect(element(page, "#model-line").dom.textContent).toMatch(
    new RegExp(`^model ${server.modelId} · ${server.dim}-d · TF.js cpu · .* downloaded once`));

  // The mini-program starts again (a new run: the shared client is gone): no download.
  faceid.resetSession();
  const before = world.downloads.length;
  const again = await openPage("enroll");
  expect(stateOf(again).state).toBe("ready");
  expect(world.downloads.length).toBe(before);
  expect(element(again, "#model-line").dom.textContent).toMatch(/from this phone's cache$/);
});

test("enroll from two picked photos; identify one of them, a stranger, and another photo of the person as the server decides", async () => {
  await server.clear();
  const enroll = await openPage("enroll");
  expect(element(enroll, "#enroll").instance.data.disabled).toBe(true); // no face yet
  type(enroll, "#identity", "celeba-7363");
  type(enroll, "#display-name", "Person 7363");
  world.picks.push([PERSON[0], PERSON[1]]);
  expect(await act(enroll, "#choose")).toBe("ok");
  expect(stateOf(enroll).text).toBe("2 face(s) ready to enroll.");
  expect(element(enroll, "#samples").dom.getAttribute("data-count")).toBe("2");
  const sent = posts().length;
  expect(await act(enroll, "#enroll")).toBe("enrolled");
  expect(stateOf(enroll).text).toBe("Enrolled Person 7363: 2 face(s) (new identity).");
  expect(posts().length).toBe(sent + 1);
  expect(enroll.data.identity).toBe(""); // the next person's photos are not filed under it
  const listed = await server.call("GET", "/identities");
  expect(listed.json.identities.map((r) => [r.identity, r.template_count ?? r.templates]))
    .toEqual([["celeba-7363", 2]]);

  const page = await openPage("identify");
  world.picks.push([PERSON[0]]);
  expect(await act(page, "#choose")).toBe("recognised");
  expect(stateOf(page).text).toBe("Recognised as Person 7363.");
  expect(element(page, "#answer").dom.textContent).toBe("Recognised as Person 7363");

  world.picks.push([STRANGER]);
  expect(await act(page, "#choose")).toBe("not-recognised");
  expect(stateOf(page).text).toBe("Not recognised: this face is not enrolled.");
  expect(element(page, "#answer").dom.textContent).toBe("Not recognised");

  // Another photo of the person: the page shows what the server's threshold decides for the
  // distances of the vectors it sent (decided here from the captured payloads).
  world.picks.push([PERSON[2]]);
  const state = await act(page, "#choose");
  const { vectors } = assertOnlyVectors(world, { url: server.url, key: server.keys.device,
    codec: new faceid.FeatureCodec(server.modelId, server.dim) });
  const probe = vectors.identify.at(-1);
  const nearest = Math.min(...vectors.enroll.slice(-2).map((v) =>
    Math.hypot(...v.map((x, i) => x - probe[i]))));
  const { threshold } = (await server.call("GET", "/model")).json;
  if (Math.abs(nearest - threshold) > 0.02) {
    expect(state).toBe(nearest < threshold ? "recognised" : "not-recognised");
  }
});

test("camera: a frame enrolls, another frame is recognised", async () => {
  await server.clear();
  const enroll = await openPage("enroll");
  expect(enroll.querySelector("#camera")).toBeFalsy();
  tap(enroll, "#camera-start");
  await settle();
  expect(enroll.querySelector("#camera")).toBeTruthy(); // the <camera> component is shown
  type(enroll, "#identity", "camera-person");
  expect(await act(enroll, "#capture")).toBe("ok");
  expect(await act(enroll, "#enroll")).toBe("enrolled");
  tap(enroll, "#camera-stop");
  await settle();
  expect(enroll.querySelector("#camera")).toBeFalsy();

  const page = await openPage("identify");
  tap(page, "#camera-start");
  await settle();
  expect(await act(page, "#capture")).toBe("recognised");
  expect(stateOf(page).text).toBe("Recognised as camera-person.");
  // A camera that gives no frames says so instead of waiting forever.
  world.cameraFails = true;
  expect(await act(page, "#capture")).toBe("error");
  expect(stateOf(page).text).toMatch(/camera gives no frames/);
  world.cameraFails = false;
});

test("refusals: no face, several faces, face too small, not an image; nothing is sent for them", async () => {
  const page = await openPage("identify");
  const sent = posts().length;
  world.picks.push([made.blank]);
  expect(await act(page, "#choose")).toBe("no-face");
  expect(stateOf(page).text).toBe("No face found. Face the camera in good light, or choose another photo.");
  world.picks.push([made.pair]);
  expect(await act(page, "#choose")).toBe("several-faces");
  expect(stateOf(page).text).toBe("2 faces found: one person at a time, please.");
  world.picks.push([made.small]);
  expect(await act(page, "#choose")).toBe("too-small");
  expect(stateOf(page).text).toMatch(/^Face too small \(eyes 1\d px apart, need 20\): come closer/);
  world.picks.push([made.text]);
  expect(await act(page, "#choose")).toBe("not-image");
  expect(stateOf(page).text).toBe("notes.jpg is not an image this phone can read: choose a JPEG or PNG photo.");
  expect(posts().length).toBe(sent);
  expect(element(page, "#answer").dom.getAttribute("data-answer")).toBe("none");

  // Enrolling from photos that all fail says why for each.
  const enroll = await openPage("enroll");
  world.picks.push([made.blank, made.text]);
  expect(await act(enroll, "#choose")).toBe("no-face");
  expect(stateOf(enroll).text).toBe("None of these photos gave a usable face (blank.jpg: no face " +
    "found; notes.jpg: not an image).");
  expect(element(enroll, "#enroll").instance.data.disabled).toBe(true);
  expect(posts().length).toBe(sent);
});

test("nobody enrolled, then not sure: a face close to two enrolled people is not named", async () => {
  await server.clear();
  const page = await openPage("identify");
  world.picks.push([PERSON[1]]);
  await act(page, "#choose");
  expect(stateOf(page)).toEqual({ state: "not-recognised",
    text: "Nobody is enrolled yet: enroll someone first." });

  const enroll = await openPage("enroll");
  type(enroll, "#identity", "twin-a");
  world.picks.push([PERSON[1]]);
  expect(await act(enroll, "#choose")).toBe("ok");
  expect(await act(enroll, "#enroll")).toBe("enrolled");
  // An operator enrolls the very same template as someone else (what the mini-program sent).
  const payload = JSON.parse(posts().at(-1).data).features[0];
  const twin = await server.call("POST", "/enroll", { identity: "twin-b", features: [payload] });
  expect(twin.status).toBe(201);

  world.picks.push([PERSON[1]]);
  expect(await act(page, "#choose")).toBe("ambiguous");
  expect(stateOf(page).text).toBe("Not sure: this face is close to more than one enrolled person.");
  expect(element(page, "#answer").dom.textContent).toBe("Not sure who this is");

  // Enrolling that face once more: the server names who it already matches (this key may list).
  type(enroll, "#identity", "twin-c");
  world.picks.push([PERSON[1]]);
  expect(await act(enroll, "#choose")).toBe("ok");
  expect(await act(enroll, "#enroll")).toBe("enrolled-conflict");
  expect(stateOf(enroll).text).toMatch(/^Enrolled twin-c: 1 face\(s\) \(new identity\)\. Warning: these faces also match twin-a, twin-b; check/);
});

test("every wx.request was JSON with names and valid feature payloads only, never an image", () => {
  const codec = new faceid.FeatureCodec(server.modelId, server.dim);
  const { counts } = assertOnlyVectors(world, { url: server.url, key: server.keys.device, codec,
    photos: [...PERSON, STRANGER, made.pair, made.small, made.blank], frames });
  // Enroll: 2 photos + 1 frame + 2 photos; identify: 3 photos + 1 frame + 2 photos.
  expect(counts.payloads).toBe(11);
  // identify needs a nonce with --require-challenge: one POST /challenge per identify.
  const routes = world.requests.map((r) => `${r.method} ${new URL(r.url).pathname}`);
  expect(routes.filter((r) => r === "POST /api/v1/identify")).toHaveLength(6);
  expect(routes.filter((r) => r === "POST /api/v1/challenge")).toHaveLength(6);
  expect(routes.filter((r) => r === "POST /api/v1/enroll")).toHaveLength(4);
  expect(world.requests.every((r) => r.status === 200 || r.status === 201)).toBe(true);
  expect(counts.downloads).toBe(6); // the models, once

  // The inspection itself refuses what it must: a photo, as base64 or raw, or a stray field.
  const jpegB64 = fs.readFileSync(PERSON[0]).toString("base64");
  const fake = (data, header = {}) => ({ requests: [{ url: server.url + "/api/v1/identify",
    method: "POST", data, body: Buffer.from(data),
    header: { Authorization: `Bearer ${server.keys.device}`, "Content-Type": "application/json",
      ...header } }], downloads: [], uploads: [] });
  const check = (w) => () => assertOnlyVectors(w, { url: server.url, key: server.keys.device,
    codec, photos: [PERSON[0]] });
  expect(check(fake(JSON.stringify({ features: jpegB64 })))).toThrow(/image as text/);
  expect(check(fake(JSON.stringify({ features: "AAAA", image: "x" })))).toThrow(/unexpected field/);
  expect(check(fake(JSON.stringify({ features: "AAAA" })))).toThrow();
  expect(check(fake("{}", { "Content-Type": "multipart/form-data" }))).toThrow(/content-type/);
});

test("model mismatch: a server whose gallery uses another model refuses to start the pages and nothing is cached", async () => {
  const other = await startServer({ modelId: "ffem-am-128-000000000000", dim: server.dim });
  const fresh = new World().install();
  try {
    fresh.storage.set("faceid-key", other.keys.device);
    config.server = other.url;
    faceid.resetSession();
    const page = await openPage("identify");
    const { state, text } = stateOf(page);
    expect(state).toBe("model-mismatch");
    expect(text).toContain("ffem-am-128-000000000000");
    expect(text).toContain(server.modelId);
    expect(element(page, "#choose").instance.data.disabled).toBe(true);
    // Only the embedder's model.json was fetched to learn that; nothing stays on the phone.
    expect(fresh.downloads.map((d) => new URL(d.url).pathname)).toEqual(["/vendor/ffem_am/model.json"]);
    expect(fs.existsSync(fresh.real(`${USER}/faceid-models/ffem-am-128-000000000000`))).toBe(false);
    expect(fresh.requests.filter((r) => r.method === "POST")).toHaveLength(0);
  } finally {
    await other.stop();
    fresh.cleanup();
    world.install();
    config.server = server.url;
    faceid.resetSession();
  }
});
