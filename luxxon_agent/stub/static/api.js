// The page's one door to the stub's API: same origin, lx_session cookie, envelope unwrapped.

export const API_PREFIX = "/api/v1";

export class ApiError extends Error {
  constructor(status, code, message) {
    super(`${code}: ${message} [HTTP ${status}]`);
    this.status = status;
    this.code = code;
  }
}

// `prefix` is /api/v1 for the API; the page's own data endpoint passes "".
export async function api(method, path, body, { prefix = API_PREFIX } = {}) {
  const init = { method, credentials: "same-origin", headers: {} };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await fetch(`${prefix}${path}`, init);
  const text = await response.text();
  let payload = null;
  try {
    payload = text ? JSON.parse(text) : null;
  } catch {
    payload = null;
  }
  if (!response.ok) {
    throw new ApiError(
      response.status,
      payload?.code ?? `HTTP_${response.status}`,
      payload?.message ?? (text.slice(0, 200) || response.statusText),
    );
  }
  // success bodies are {statusCode, message, data, timestamp}; a bare payload is accepted too
  if (payload && typeof payload === "object" && "data" in payload && "statusCode" in payload) {
    return payload.data;
  }
  return payload;
}
