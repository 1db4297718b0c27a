// The console's only way to the server: the same HTTP API every client uses, with the
// console session's cookie (sent by the browser, same origin only) standing for the person's
// credentials, and the session's CSRF token on every request that may change something.

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message || code || ('HTTP ' + status));
    this.status = status;
    this.code = code;
  }
}

const state = {csrf: '', onLoggedOut: null};

export function setSession(info, onLoggedOut) {
  state.csrf = info.csrf || '';
  state.onLoggedOut = onLoggedOut;
}

// topicPath encodes a topic or filter for a URL path, level by level ('#' and '+' too).
export function topicPath(t) {
  return t.split('/').map(encodeURIComponent).join('/');
}

// api(method, path, {json, body, query, contentType, raw}) calls the API. JSON answers are
// parsed; raw returns the Response. An error answer throws ApiError with its stable code.
export async function api(method, path, opts = {}) {
  // Marks the console's requests: answers to them never carry a WWW-Authenticate challenge,
  // so the browser does not put up its own login dialog (see console.Wrap).
  const headers = {'X-Requested-With': 'tern-console'};
  let body = opts.body;
  if (opts.json !== undefined) {
    headers['Content-Type'] = 'application/json';
    body = JSON.stringify(opts.json);
  } else if (opts.contentType) {
    headers['Content-Type'] = opts.contentType;
  }
  if (method !== 'GET' && method !== 'HEAD') headers['X-Tern-CSRF'] = state.csrf;
  let url = path;
  if (opts.query) {
    const q = new URLSearchParams();
    for (const [k, v] of Object.entries(opts.query)) {
      if (Array.isArray(v)) v.forEach(x => q.append(k, x));
      else if (v !== undefined && v !== null && v !== '') q.append(k, v);
    }
    const qs = q.toString();
    if (qs) url += '?' + qs;
  }
  const res = await fetch(url, {method, headers, body, credentials: 'same-origin', cache: 'no-store'});
  if (opts.raw) return res;
  const text = await res.text();
  let data = null;
  if (text && (res.headers.get('Content-Type') || '').includes('json')) {
    try { data = JSON.parse(text); } catch { data = null; }
  }
  if (!res.ok) {
    const err = data && data.error ? data.error : {};
    if (res.status === 401 && state.onLoggedOut && (err.code === 'session_expired' || err.code === 'unauthorized')) {
      state.onLoggedOut(err.message);
    }
    throw new ApiError(res.status, err.code, err.message || text.trim() || res.statusText);
  }
  return data !== null ? data : text;
}

export const get = (path, query) => api('GET', path, {query});
