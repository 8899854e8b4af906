// A real `faceid-sdk serve` on loopback, keyed as in production, hosting clients/web (and so
// /vendor/, the model files the mini-program fetches once).
const { spawn, execFileSync } = require("child_process");
const fs = require("fs");
const http = require("http");
const net = require("net");
const os = require("os");
const path = require("path");
const { ROOT, WEB, HINT, python, vendorModel } = require("./paths");

function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.listen(0, "127.0.0.1", () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
    srv.on("error", reject);
  });
}

function get(url, headers = {}) {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { headers, timeout: 2000, agent: false }, (res) => {
      const chunks = [];
      res.on("data", (c) => chunks.push(c));
      res.on("end", () => resolve({ status: res.statusCode, body: Buffer.concat(chunks).toString() }));
    });
    req.on("error", reject);
    req.on("timeout", () => req.destroy(new Error("timeout")));
  });
}

/** A JSON call with a key (the tests' operator side, not the mini-program's). */
function call(method, url, key, body) {
  return new Promise((resolve, reject) => {
    const data = body === undefined ? null : Buffer.from(JSON.stringify(body));
    const headers = { Authorization: `Bearer ${key}` };
    if (data) Object.assign(headers, { "Content-Type": "application/json", "Content-Length": data.length });
    const req = http.request(url, { method, headers, agent: false }, (res) => {
      const chunks = [];
      res.on("data", (c) => chunks.push(c));
      res.on("end", () => {
        const text = Buffer.concat(chunks).toString();
        resolve({ status: res.statusCode, json: text ? JSON.parse(text) : null });
      });
    });
    req.on("error", reject);
    if (data) req.write(data);
    req.end();
  });
}

const KEYS_SCRIPT = `
import json, sys
from faceid_sdk import Enroller
with Enroller(sys.argv[1], sys.argv[2], int(sys.argv[3])) as e:
    print(json.dumps({
        "device": e.create_api_key("wechat-desk", ["identify", "verify", "enroll", "list"])[1],
        "operator": e.create_api_key("tests", ["operator"])[1],
    }))
`;

/**
 * Start the server with an empty store for `modelId` (default: the hosted export's), two keys
 * and `args` (more `serve` options): {url, keys: {device, operator}, modelId, dim, call(),
 * clear(), stop()}.
 */
async function startServer({ modelId, dim, args = [] } = {}) {
  const meta = vendorModel();
  modelId = modelId ?? meta.model_id;
  dim = dim ?? Number(meta.dim);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "faceid-wechat-"));
  const store = path.join(dir, "faces.db");
  let keys;
  try {
    keys = JSON.parse(execFileSync(python(), ["-c", KEYS_SCRIPT, store, modelId, String(dim)],
      { cwd: dir, encoding: "utf8", stdio: ["ignore", "pipe", "pipe"],
        env: { ...process.env, PYTHONPATH: ROOT } }));
  } catch (error) {
    throw new Error(`could not create API keys with ${python()} (${error.stderr || error}): ${HINT}`);
  }
  const port = await freePort();
  const proc = spawn(python(), ["-m", "faceid_sdk", "serve", "--store", store, "--model-id", modelId,
    "--dim", String(dim), "--port", String(port), "--static", WEB, "--rate", "0",
    "--log-level", "warning", ...args], { cwd: dir, stdio: ["ignore", "ignore", "pipe"],
    env: { ...process.env, PYTHONPATH: ROOT } });
  let stderr = "";
  proc.stderr.on("data", (c) => { stderr = (stderr + c).slice(-4000); });
  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 60000;
  for (;;) {
    if (proc.exitCode !== null) throw new Error(`faceid-sdk serve exited: ${stderr}`);
    try {
      if ((await get(`${url}/api/v1/health`)).status === 200) break;
    } catch {
      // not yet
    }
    if (Date.now() > deadline) {
      proc.kill("SIGKILL");
      throw new Error(`faceid-sdk serve did not answer within 60 s: ${stderr}`);
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  return {
    url, keys, modelId, dim, dir,
    call: (method, route, body) => call(method, url + "/api/v1" + route, keys.operator, body),
    /** Remove every enrolled identity. */
    async clear() {
      const { json } = await call("GET", `${url}/api/v1/identities`, keys.operator);
      for (const { identity } of json.identities) {
        await call("DELETE", `${url}/api/v1/identities/${encodeURIComponent(identity)}`, keys.operator);
      }
    },
    stop() {
      return new Promise((resolve) => {
        if (proc.exitCode !== null) return resolve();
        const timer = setTimeout(() => proc.kill("SIGKILL"), 15000);
        proc.on("exit", () => {
          clearTimeout(timer);
          fs.rmSync(dir, { recursive: true, force: true });
          resolve();
        });
        proc.kill("SIGTERM");
      });
    },
  };
}

module.exports = { startServer };
