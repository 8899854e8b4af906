// The JSON API of `faceid-sdk serve` (docs/server.md). Bodies carry only base64url feature
// payloads (codec.js) and names; answers carry decisions, never distances.

/** An error answer of the server: HTTP status plus its stable code and message. */
export class ApiError extends Error {
  constructor(status, code, message, field) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.code = code;
    this.field = field;
  }
}

/**
 * How a call reaches the server: `(method, url, headers, body) => Promise<{status, text}>`,
 * with `body` a JSON string or undefined; it rejects only when no answer came. The page uses
 * `fetch`; the WeChat mini-program passes one over `wx.request`.
 */
export async function fetchTransport(method, url, headers, body) {
  const response = await fetch(url, { method, headers, body });
  return { status: response.status, text: await response.text() };
}

/**
 * The API at `base`. `key` is a scoped API key (`faceid-sdk keys create`), sent as
 * `Authorization: Bearer` on every call once the server has keys; never in a URL or a body.
 * `transport`: see fetchTransport.
 */
export function createApi(base = "/api/v1", { key = null, transport = fetchTransport } = {}) {
  async function call(method, path, body) {
    const headers = { Accept: "application/json" };
    if (key) headers.Authorization = `Bearer ${key}`;
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const { status, text } = await transport(method, base + path, headers,
      body === undefined ? undefined : JSON.stringify(body));
    let data = null;
    try {
      data = JSON.parse(text);
    } catch {
      // not JSON (a proxy's error page, say): reported below
    }
    if (status < 200 || status >= 300 || data === null) {
      const e = data?.error ?? {};
      throw new ApiError(status, e.code ?? "http_" + status,
        e.message ?? `${method} ${path} answered HTTP ${status}`, e.field);
    }
    return data;
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
