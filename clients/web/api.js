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
 * The API at `base`. `key` is a scoped API key (`faceid-sdk keys create`), sent as
 * `Authorization: Bearer` on every call once the server has keys; never in a URL or a body.
 */
export function createApi(base = "/api/v1", { key = null } = {}) {
  async function call(method, path, body) {
    const init = { method, headers: { Accept: "application/json" } };
    if (key) init.headers.Authorization = `Bearer ${key}`;
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    const response = await fetch(base + path, init);
    let data = null;
    try {
      data = await response.json();
    } catch {
      // not JSON: reported below
    }
    if (!response.ok) {
      const e = data?.error ?? {};
      throw new ApiError(response.status, e.code ?? "http_" + response.status,
        e.message ?? `${method} ${path} answered HTTP ${response.status}`, e.field);
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
