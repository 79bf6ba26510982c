// The REST API of this server, with the key the user gave (kept in this tab's
// sessionStorage only: gone when the tab closes, never in a URL, never in a cookie).

const KEY = "ctxlog.key";
const BASE = "/api/v1";

export class ApiError extends Error {
  constructor(status, code, message, details) {
    super(message);
    this.status = status;
    this.code = code;
    this.details = details || {};
  }
}

export function apiKey() {
  return sessionStorage.getItem(KEY);
}

export function setApiKey(key) {
  sessionStorage.setItem(KEY, key);
}

export function forgetApiKey() {
  sessionStorage.removeItem(KEY);
}

/** Headers every request carries: the key, when there is one. */
export function authHeaders(extra = {}) {
  const headers = { Accept: "application/json", ...extra };
  const key = apiKey();
  if (key) headers["X-API-Key"] = key;
  return headers;
}

/** The URL of an API path with query parameters (empty ones left out). */
export function apiUrl(path, params = {}) {
  const url = new URL(BASE + path, location.origin);
  for (const [name, value] of Object.entries(params)) {
    if (value !== null && value !== undefined && value !== "") url.searchParams.set(name, value);
  }
  return url;
}

/** GET an API path; the JSON answer, or an ApiError with the server's code and message. */
export async function get(path, params = {}, signal = undefined) {
  const response = await fetch(apiUrl(path, params), {
    headers: authHeaders(),
    credentials: "omit",
    cache: "no-store",
    signal,
  });
  if (!response.ok) throw await asError(response);
  return response.json();
}

export async function asError(response) {
  let error = null;
  try {
    error = (await response.json()).error;
  } catch {
    // not JSON: a proxy's page, say
  }
  return new ApiError(
    response.status,
    error ? error.code : "http_" + response.status,
    error ? error.message : response.statusText || "request failed",
    error ? error.details : {},
  );
}
