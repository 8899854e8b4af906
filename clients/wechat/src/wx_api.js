// @ts-check
// The JSON API of `faceid-sdk serve` (docs/server.md) over wx.request: clients/web/api.js's
// calls, answers and ApiError, with a transport that speaks wx.request. Bodies are JSON strings
// holding names and base64url feature payloads (codec.js); nothing else is ever sent, and never
// an image.
import { ApiError, createApi } from "../../web/api.js";

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

  /**
   * @param {string} method @param {string} url @param {Record<string, string>} header
   * @param {string | undefined} body
   * @returns {Promise<{status: number, text: string}>}
   */
  function transport(method, url, header, body) {
    return new Promise((resolve, reject) => {
      /** @type {WechatMiniprogram.RequestOption<string>} */
      const options = {
        url, method: /** @type {"GET" | "POST"} */ (method), header, timeout,
        // Parsed by api.js, not by wx ("其他", WeChat's documented value for "do not
        // JSON.parse"): a non-JSON answer (a proxy's HTML page) becomes an ApiError.
        dataType: "其他", responseType: "text",
        success(res) {
          const text = typeof res.data === "string" ? res.data : JSON.stringify(res.data);
          resolve({ status: res.statusCode, text });
        },
        fail(err) {
          const path = url.slice(base.length);
          reject(new ApiError(0, "network",
            `${method} ${path} did not reach the server (${err?.errMsg ?? err}): check the ` +
            "network and that the server's domain is in the mini-program's request whitelist"));
        },
      };
      if (body !== undefined) options.data = body;
      send(options);
    });
  }

  return createApi(base, { key, transport });
}
