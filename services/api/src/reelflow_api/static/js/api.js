// The REST API, as the contract describes it: Bearer key, problem+json errors.

/** An error answer (or none at all: status 0), with the problem's fields. */
export class ApiError extends Error {
  constructor(status, problem = {}) {
    super(problem.detail || problem.title || `HTTP ${status}`);
    this.status = status;
    this.title = problem.title ?? '';
    /** [{loc: [...], msg}] of a 422, naming each bad field */
    this.errors = Array.isArray(problem.errors) ? problem.errors : [];
    /** a refusal by one of the tenant's limits (402, 403, 429): its name, and when it resets */
    this.limit = problem.limit ?? null;
    this.resetsAt = problem.resets_at ?? null;
  }
}

async function call(path, { method = 'GET', key, body } = {}) {
  const headers = {};
  if (key) headers.Authorization = `Bearer ${key}`;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  let response;
  try {
    response = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  } catch {
    throw new ApiError(0, { title: 'Unreachable', detail: 'The API did not answer. Is reelflow running?' });
  }
  const text = await response.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = { title: response.statusText, detail: text.slice(0, 200) };
  }
  if (!response.ok) throw new ApiError(response.status, data ?? { title: response.statusText });
  return data;
}

/** ``GET /v1/config``: where the notifier is, and a project's defaults and limits. */
export function loadConfig() {
  return call('/v1/config');
}

/** The API as one tenant (one key) sees it. */
export class Api {
  constructor(key) {
    this.key = key;
  }

  listProjects({ cursor = null, limit = 20 } = {}) {
    const query = new URLSearchParams({ limit: String(limit) });
    if (cursor) query.set('cursor', cursor);
    return call(`/v1/projects?${query}`, { key: this.key });
  }

  createProject(body) {
    return call('/v1/projects', { method: 'POST', key: this.key, body });
  }

  getProject(projectId) {
    return call(`/v1/projects/${encodeURIComponent(projectId)}`, { key: this.key });
  }

  /** ``GET /v1/projects/{id}/scenes``: what each scene asked for (its prompt, duration, size). */
  getScenes(projectId) {
    return call(`/v1/projects/${encodeURIComponent(projectId)}/scenes`, { key: this.key });
  }

  retry(projectId) {
    return call(`/v1/projects/${encodeURIComponent(projectId)}/retry`, { method: 'POST', key: this.key });
  }

  cancel(projectId) {
    return call(`/v1/projects/${encodeURIComponent(projectId)}/cancel`, { method: 'POST', key: this.key });
  }

  /** ``GET /v1/usage``: spend per UTC day of a month (the current one), limits, what is committed. */
  usage(month = null) {
    return call(`/v1/usage${month ? `?month=${encodeURIComponent(month)}` : ''}`, { key: this.key });
  }

  /** A single-use ticket for the WebSocket: the key itself never goes into a URL. */
  async wsTicket() {
    return (await call('/v1/ws-tickets', { method: 'POST', key: this.key })).ticket;
  }
}
