// @ts-check
// The JSON API of `faceid-sdk serve` (docs/server.md) over wx.request: the calls and answers of
// clients/web/api.js, the same ApiError. Bodies are JSON strings holding names and base64url
// feature payloads (codec.js); nothing else is ever sent, and never an image.
import { ApiError } from "../../web/api.js";

export { ApiError };

/**
 * The API at `base` (e.g. "https://faceid.example.com/api/v1"). `key`: a scoped API key
 * (`faceid-sdk keys create`), sent as `Authorization: Bearer` on every call, never in a URL
 * or a body. `request`: wx.request (injectable for tests).
 * @param {string} base
 * @param {{key?: string | null, request?: (options: WechatMiniprogram.RequestOption) => unknown,
 *   timeout?: number}} [options]
 */
export function createWxApi(base, { key = null, request, timeout = 20000 } = {}) {
  const send = request ?? ((options) => wx.request(options));

  /** @param {"GET" | "POST"} method @param {string} path @param {object} [body] */
  function call(method, path, body) {
    return new Promise((resolve, reject) => {
      /** @type {Record<string, string>} */
      const header = { Accept: "application/json" };
      if (key) header.Authorization = `Bearer ${key}`;
      /** @type {WechatMiniprogram.RequestOption<string>} */
      const options = {
        url: base + path, method, header, timeout,
        // Parsed here, not by wx ("其他", WeChat's documented value for "do not JSON.parse"):
        // a non-JSON answer (a proxy's HTML page) becomes an ApiError.
        dataType: "其他", responseType: "text",
        success(res) {
          let data = null;
          try {
            data = typeof res.data === "string" ? JSON.parse(res.data) : res.data;
          } catch {
            // not JSON: reported below
          }
          if (res.statusCode >= 200 && res.statusCode < 300 && data !== null) {
            resolve(data);
            return;
          }
          const e = data?.error ?? {};
          reject(new ApiError(res.statusCode, e.code ?? "http_" + res.statusCode,
            e.message ?? `${method} ${path} answered HTTP ${res.statusCode}`, e.field));
        },
        fail(err) {
          reject(new ApiError(0, "network",
            `${method} ${path} did not reach the server (${err?.errMsg ?? err}): check the ` +
            "network and that the server's domain is in the mini-program's request whitelist"));
        },
      };
      if (body !== undefined) {
        header["Content-Type"] = "application/json";
        options.data = JSON.stringify(body);
      }
      send(options);
    });
  }

  return {
    /** {model_id, dim, threshold, challenge_required, max_enroll_features, ...} */
    model: () => call("GET", "/model"),
    /** Enroll `identity` from 1-16 text payloads; {identity, created, templates_added, ...} */
    enroll: (identity, features, displayName) => call("POST", "/enroll", {
      identity, features, ...(displayName ? { display_name: displayName } : {}),
    }),
    /** {recognised, identity, display_name, reason}; fetches a nonce first when required. */
    identify: async (feature, { challengeRequired = false } = {}) => {
      const body = { features: feature };
      if (challengeRequired) body.challenge = (await call("POST", "/challenge")).nonce;
      return call("POST", "/identify", body);
    },
  };
}
