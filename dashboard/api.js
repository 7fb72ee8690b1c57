// AdminService through the Connect protocol's JSON over HTTP (POST
// /kiln.v1.AdminService/<Method>), with the bearer token this browser keeps.

const TOKEN_KEY = 'kiln-dashboard-token';

export class ApiError extends Error {
  constructor(code, message) {
    super(message);
    this.code = code;
  }
}

export const token = () => localStorage.getItem(TOKEN_KEY) ?? '';
export const setToken = (value) => localStorage.setItem(TOKEN_KEY, value);
export const forgetToken = () => localStorage.removeItem(TOKEN_KEY);

/** One AdminService call as Connect JSON. */
export async function call(method, request = {}) {
  const res = await fetch(`/kiln.v1.AdminService/${method}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'connect-protocol-version': '1', authorization: `Bearer ${token()}` },
    body: JSON.stringify(request),
  });
  const body = await res.json().catch(() => ({}));
  if (!res.ok) throw new ApiError(body.code ?? `http ${res.status}`, body.message ?? res.statusText);
  return body;
}

/** A call whose answer is kept for `ms`: what changes slowly is not asked for at every refresh. */
export function every(ms, method) {
  const kept = new Map();
  return async (request = {}) => {
    const key = JSON.stringify(request);
    const hit = kept.get(key);
    if (hit && Date.now() - hit.at < ms) return hit.value;
    const value = await call(method, request);
    kept.clear();
    kept.set(key, { at: Date.now(), value });
    return value;
  };
}
