// The admin API, as the console's pages use it: the access token lives in this module only (never in
// storage), the refresh token in the tab's sessionStorage so that a reload stays signed in until the
// tab closes. Every request carries the token as a bearer header, as any other client does; an
// expired token is renewed once with the refresh token, which the API spends and replaces.

const REFRESH_KEY = 'cerberus.console.refresh';

let access = null;
let user = null;
let refreshing = null;
const listeners = new Set();

/** An answer of the API that is not a success, with the message and field the API gave. */
export class ApiError extends Error {
  constructor(status, body) {
    const detail = body && body.error ? body.error : {};
    const where = detail.field ? ` (${detail.field})` : '';
    super(`${detail.message || `the gateway answered ${status}`}${where}`);
    this.status = status;
    this.code = detail.code;
    this.field = detail.field;
  }
}

/** The signed-in user, or null. */
export function currentUser() {
  return user;
}

/** Whether the signed-in user may change workspaces, agent accesses and policies. */
export function canWrite() {
  return user !== null && (user.role === 'admin' || user.role === 'owner');
}

/** Whether the signed-in user may manage the organisation and its users. */
export function canManage() {
  return user !== null && user.role === 'owner';
}

/** Calls `listener` whenever the user signs in or out. */
export function onSessionChange(listener) {
  listeners.add(listener);
}

function adopt(tokens) {
  access = tokens.access_token;
  user = tokens.user;
  sessionStorage.setItem(REFRESH_KEY, tokens.refresh_token);
  listeners.forEach((listener) => listener(user));
}

function forget() {
  access = null;
  user = null;
  sessionStorage.removeItem(REFRESH_KEY);
  listeners.forEach((listener) => listener(null));
}

async function post(path, body) {
  const response = await fetch(path, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify(body),
    credentials: 'omit',
  });
  const answer = await readBody(response);
  if (!response.ok) throw new ApiError(response.status, answer);
  return answer;
}

async function readBody(response) {
  const type = response.headers.get('content-type') || '';
  if (response.status === 204) return null;
  if (type.includes('application/json')) return response.json();
  return response.text();
}

/** Signs in with an email and a password. */
export async function signIn(email, password) {
  adopt(await post('/api/v1/auth/login', { email, password }));
}

/** Resumes the tab's session, if it has a refresh token that still works. */
export async function resume() {
  if (!sessionStorage.getItem(REFRESH_KEY)) return false;
  return renew();
}

/** Trades the refresh token for new tokens; one renewal at a time however many requests need it. */
function renew() {
  if (!refreshing) {
    const token = sessionStorage.getItem(REFRESH_KEY);
    refreshing = (async () => {
      if (!token) return false;
      try {
        adopt(await post('/api/v1/auth/refresh', { refresh_token: token }));
        return true;
      } catch {
        forget();
        return false;
      }
    })().finally(() => {
      refreshing = null;
    });
  }
  return refreshing;
}

/** Signs out: the refresh token, and every token rotated from it, stops working. */
export async function signOut() {
  const token = sessionStorage.getItem(REFRESH_KEY);
  forget();
  if (token) {
    try {
      await post('/api/v1/auth/logout', { refresh_token: token });
    } catch {
      // Signed out here whatever the gateway answers; the token expires by itself.
    }
  }
}

/** Calls the API; a JSON answer is parsed, anything else is returned as text. */
export async function request(method, path, body, { raw = false } = {}) {
  const send = () => fetch(path, {
    method,
    headers: {
      Authorization: `Bearer ${access}`,
      ...(body === undefined ? {} : { 'Content-Type': 'application/json' }),
    },
    body: body === undefined ? undefined : JSON.stringify(body),
    credentials: 'omit',
  });
  let response = await send();
  if (response.status === 401 && (await renew())) response = await send();
  if (response.status === 401) forget();
  if (raw && response.ok) return response;
  const answer = await readBody(response);
  if (!response.ok) throw new ApiError(response.status, answer);
  return answer;
}

export const get = (path) => request('GET', path);
export const create = (path, body) => request('POST', path, body);
export const patch = (path, body) => request('PATCH', path, body);
export const put = (path, body) => request('PUT', path, body);
export const remove = (path) => request('DELETE', path);

/** Every item of a paged list (`items` and `next_offset`), up to `most`. */
export async function all(path, most = 1000) {
  const items = [];
  let offset = 0;
  while (offset !== null && offset !== undefined && items.length < most) {
    const separator = path.includes('?') ? '&' : '?';
    const page = await get(`${path}${separator}limit=200&offset=${offset}`);
    items.push(...page.items);
    offset = page.next_offset;
  }
  return items;
}

/** The caller's organisation's path prefix. */
export function organisationPath() {
  return `/api/v1/organisations/${user.organisation}`;
}

/** The organisation's workspaces and agent accesses by id, to show names where records hold ids. */
export async function directory() {
  const workspaces = await all(`${organisationPath()}/mcp-server-workspaces`);
  const agents = (await Promise.all(workspaces.map((w) => all(`/api/v1/mcp-server-workspaces/${w.id}/agent-accesses`)))).flat();
  return {
    workspaces,
    agents,
    workspaceName: new Map(workspaces.map((w) => [w.id, w.name])),
    agentName: new Map(agents.map((a) => [a.id, a.name])),
  };
}
