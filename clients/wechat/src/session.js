// @ts-check
// One client per mini-program run, shared by the pages: TF.js started, the server's model
// read (GET /api/v1/model), the three models taken from the phone's cache or fetched once,
// the pipeline warmed up, and a codec for the server's model id.
import { FeatureCodec } from "../../web/codec.js";
import { createFacePipeline } from "../../web/face_core.js";
import { ModelMismatchError, ensureModels, loadGraphModels } from "./models.js";
import { loadGraphModel, startTf, tf } from "./tf.js";
import { createWxApi } from "./wx_api.js";

let current = null;

const now = () => Date.now();

async function boot({ server, key = null, backend, api: host = wx }) {
  const t0 = now();
  const base = server.replace(/\/+$/, "");
  const backendName = await startTf(backend);
  const api = createWxApi(base + "/api/v1", { key, request: (o) => host.request(o) });
  const model = await api.model();
  const fs = host.getFileSystemManager();
  const t1 = now();
  const cached = await ensureModels({
    modelId: model.model_id, base: base + "/vendor/", fs,
    download: (o) => host.downloadFile(o), root: host.env.USER_DATA_PATH,
  });
  const t2 = now();
  const models = await loadGraphModels(loadGraphModel, fs, cached.dir);
  const pipeline = createFacePipeline({ tf, ...models });
  if (pipeline.modelId !== model.model_id || pipeline.dim !== model.dim) {
    throw new ModelMismatchError(`${model.model_id} (${model.dim}-d)`,
      `${pipeline.modelId} (${pipeline.dim}-d)`);
  }
  await pipeline.warmUp();
  const t3 = now();
  return {
    api, server: model, pipeline, backend: backendName,
    codec: new FeatureCodec(model.model_id, model.dim),
    models: { source: cached.source, dir: cached.dir,
      bytes: Object.values(cached.files).reduce((a, b) => a + b, 0) },
    timings: { fetchMs: t2 - t1, loadMs: t3 - t2, totalMs: t3 - t0 },
  };
}

/**
 * The shared client, started on the first call: {api, server, pipeline, codec, backend,
 * models: {source: "cache"|"download", dir, bytes}, timings}. `config`: {server (the base URL,
 * https:// in production), key (API key or null), backend (e.g. the plugin's webgl)}. A start
 * that failed is tried again on the next call.
 */
export function startSession(config) {
  if (!current) {
    current = boot(config);
    current.catch(() => { current = null; });
  }
  return current;
}

/** Forget the client (a new server, key or model). */
export function resetSession() {
  current = null;
}
