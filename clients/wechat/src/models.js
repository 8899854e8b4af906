// @ts-check
// The three TF.js graph models on the phone: fetched once from the project's own server
// (`faceid-sdk serve --static clients/web` serves them at /vendor/), kept in the mini-program's
// user file system under the model id the server names, and loaded from there on every later
// start, as the seed paper's mini-program did. The model files travel by wx.downloadFile (GET,
// nothing uploaded); wx.request carries JSON only.
//
// Cache layout, under wx.env.USER_DATA_PATH:
//   faceid-models/<model_id>/{ffem_am,detector,landmarks}/{model.json,*.bin}
//   faceid-models/<model_id>/complete.json   written last: {model_id, files: {path: bytes}}
// The FFEM-AM model.json is fetched first and its model id checked before any weights travel.
// A folder without complete.json, with another model id in it, or with a file of another size
// is not trusted: it is removed and the models are fetched again. Folders of other model ids
// are removed once a new model is in place (the phone keeps one model, ~4.4 MB).

export const MODEL_DIRS = { embedder: "ffem_am", detector: "detector", landmarks: "landmarks" };
const CACHE = "faceid-models";

/** The models the server hosts are not the model its gallery uses (or the cache's). */
export class ModelMismatchError extends Error {
  constructor(serverModelId, modelId) {
    super(`the server's gallery uses model ${serverModelId} but the model it hosts (or this ` +
      `phone has) is ${modelId}: update the model files on the server (clients/web/prepare.py)`);
    this.name = "ModelMismatchError";
    this.code = "model-mismatch";
    this.serverModelId = serverModelId;
    this.modelId = modelId;
  }
}

/** A model file could not be fetched or is not what its model.json promises. */
export class ModelFetchError extends Error {
  constructor(message) {
    super(message);
    this.name = "ModelFetchError";
    this.code = "model-fetch";
  }
}

const DTYPE_BYTES = { float32: 4, int32: 4, bool: 1, uint8: 1, uint16: 2, float16: 2 };

/** Bytes the weight specs of a model.json need (quantized weights count at their dtype). */
export function weightBytes(specs) {
  let total = 0;
  for (const spec of specs) {
    const count = spec.shape.reduce((a, b) => a * b, 1);
    const dtype = spec.quantization?.dtype ?? spec.dtype;
    if (!(dtype in DTYPE_BYTES)) throw new ModelFetchError(`weight ${spec.name}: dtype ${dtype}`);
    total += count * DTYPE_BYTES[dtype];
  }
  return total;
}

function exists(fs, path) {
  try {
    fs.accessSync(path);
    return true;
  } catch {
    return false;
  }
}

function removeTree(fs, path) {
  if (exists(fs, path)) fs.rmdirSync(path, true);
}

function readJson(fs, path) {
  return JSON.parse(fs.readFileSync(path, "utf8"));
}

/** One file from `url` into `filePath` (wx.downloadFile), refusing anything but HTTP 200. */
function downloadTo(download, url, filePath, timeout) {
  return new Promise((resolve, reject) => {
    download({
      url, filePath, timeout,
      success(res) {
        if (res.statusCode === 200) resolve(res);
        else reject(new ModelFetchError(`GET ${url} answered HTTP ${res.statusCode}`));
      },
      fail(err) {
        reject(new ModelFetchError(`GET ${url} failed (${err?.errMsg ?? err}): the server's ` +
          "domain must be in the mini-program's downloadFile whitelist"));
      },
    });
  });
}

/** The model.json files and the weight shards they name, with their sizes checked. */
async function fetchModels({ fs, download, base, dir, timeout, modelId }) {
  const files = {};
  for (const name of Object.values(MODEL_DIRS)) {
    fs.mkdirSync(`${dir}/${name}`, true);
    const jsonPath = `${dir}/${name}/model.json`;
    await downloadTo(download, `${base}${name}/model.json`, jsonPath, timeout);
    let model;
    try {
      model = readJson(fs, jsonPath);
    } catch {
      throw new ModelFetchError(`${base}${name}/model.json is not JSON`);
    }
    if (!model.modelTopology || !Array.isArray(model.weightsManifest)) {
      throw new ModelFetchError(`${base}${name}/model.json is not a TF.js graph model`);
    }
    if (name === MODEL_DIRS.embedder) {
      // Checked before any weights travel: a mismatch costs one small JSON file.
      const hosted = model.userDefinedMetadata?.faceid?.model_id ?? null;
      if (hosted !== modelId) throw new ModelMismatchError(modelId, hosted);
    }
    files[`${name}/model.json`] = fs.statSync(jsonPath).size;
    let got = 0;
    for (const group of model.weightsManifest) {
      for (const shard of group.paths) {
        if (!/^[\w.-]+$/.test(shard)) throw new ModelFetchError(`shard name ${shard}`);
        const path = `${dir}/${name}/${shard}`;
        await downloadTo(download, `${base}${name}/${shard}`, path, timeout);
        files[`${name}/${shard}`] = fs.statSync(path).size;
        got += files[`${name}/${shard}`];
      }
    }
    const want = weightBytes(model.weightsManifest.flatMap((g) => g.weights));
    if (got !== want) {
      throw new ModelFetchError(`${name}: ${got} bytes of weights, its model.json needs ${want}`);
    }
  }
  return files;
}

/** The model id a model folder's FFEM-AM model.json carries (prepare.py writes it). */
function modelIdIn(fs, dir) {
  return readJson(fs, `${dir}/${MODEL_DIRS.embedder}/model.json`)
    .userDefinedMetadata?.faceid?.model_id ?? null;
}

/** Whether `dir` holds a complete, untampered download of `modelId`. */
function cacheValid(fs, dir, modelId) {
  try {
    const done = readJson(fs, `${dir}/complete.json`);
    if (done.model_id !== modelId || modelIdIn(fs, dir) !== modelId) return false;
    return Object.entries(done.files).every(([p, size]) => fs.statSync(`${dir}/${p}`).size === size);
  } catch {
    return false;
  }
}

/** A TF.js IOHandler over one cached model folder: model.json plus its shards, concatenated. */
export function fileHandler(fs, folder) {
  return {
    load: async () => {
      const model = readJson(fs, `${folder}/model.json`);
      const shards = model.weightsManifest.flatMap((g) => g.paths)
        .map((p) => new Uint8Array(fs.readFileSync(`${folder}/${p}`)));
      const weightData = new Uint8Array(shards.reduce((n, s) => n + s.length, 0));
      let offset = 0;
      for (const s of shards) {
        weightData.set(s, offset);
        offset += s.length;
      }
      return {
        modelTopology: model.modelTopology,
        weightSpecs: model.weightsManifest.flatMap((g) => g.weights),
        weightData: weightData.buffer,
        format: model.format,
        generatedBy: model.generatedBy,
        convertedBy: model.convertedBy,
        userDefinedMetadata: model.userDefinedMetadata,
      };
    },
  };
}

/**
 * The cached folder of `modelId` (the id `GET /api/v1/model` names), fetched from `base` (the
 * server's /vendor/ URL, ending in "/") when the phone has none or a broken one. Resolves to
 * {dir, source: "cache"|"download", files}; rejects with ModelMismatchError when the server
 * hosts another model than `modelId` (nothing is cached then), ModelFetchError when a file
 * cannot be had.
 */
export async function ensureModels({ modelId, base, fs, download, root, timeout = 60000 }) {
  if (!/^[A-Za-z0-9._-]{1,64}$/.test(modelId)) throw new ModelFetchError(`model id ${modelId}`);
  const cache = `${root}/${CACHE}`;
  const dir = `${cache}/${modelId}`;
  if (cacheValid(fs, dir, modelId)) {
    return { dir, source: "cache", files: readJson(fs, `${dir}/complete.json`).files };
  }
  // Downloaded in place; complete.json, written last, is what makes the folder trusted.
  removeTree(fs, dir);
  fs.mkdirSync(dir, true);
  try {
    const files = await fetchModels({ fs, download, base, dir, timeout, modelId });
    fs.writeFileSync(`${dir}/complete.json`,
      JSON.stringify({ model_id: modelId, files, saved_at: new Date().toISOString() }), "utf8");
    // One model on the phone: the folders of earlier model ids go.
    for (const name of fs.readdirSync(cache)) {
      if (name !== modelId) removeTree(fs, `${cache}/${name}`);
    }
    return { dir, source: "download", files };
  } catch (error) {
    removeTree(fs, dir);
    throw error;
  }
}

/** The three loaded graph models of a model folder: {embedder, detector, landmarks}.
 * @returns {Promise<{embedder: any, detector: any, landmarks: any}>} */
export async function loadGraphModels(loadGraphModel, fs, dir) {
  const out = { embedder: null, detector: null, landmarks: null };
  for (const [role, name] of Object.entries(MODEL_DIRS)) {
    out[role] = await loadGraphModel(fileHandler(fs, `${dir}/${name}`));
  }
  return out;
}
