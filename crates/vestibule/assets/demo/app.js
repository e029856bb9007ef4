// Vestibule demo: vanilla JS against the /auth API. No build step, no dependencies.

const $ = (selector) => document.querySelector(selector);

// ---------------------------------------------------------------------------
// API client with CSRF handling
// ---------------------------------------------------------------------------

// The latest CSRF token. The session cookie is HttpOnly, so the token comes from response
// bodies: login, signup, /auth/me, /auth/csrf and /auth/password all return `csrf_token`.
let csrf = null;

const CSRF_ERRORS = new Set(['csrf_token_mismatch', 'csrf_token_missing']);

/** An API error: the JSON body `{code, message, hint}` plus the HTTP status. */
class ApiError extends Error {
  constructor(status, body) {
    super(body?.message || `HTTP ${status}`);
    this.status = status;
    this.code = body?.code || 'http_error';
    this.hint = body?.hint || '';
  }
}

/** One fetch. Remembers any `csrf_token` found in the response body. */
async function send(method, path, body) {
  const headers = { Accept: 'application/json' };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  if (method !== 'GET' && csrf) headers['X-CSRF-Token'] = csrf;
  let res;
  try {
    res = await fetch(path, {
      method,
      credentials: 'include',
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (err) {
    throw new ApiError(0, { code: 'network_error', message: String(err.message || err), hint: 'is the server running?' });
  }
  const data = res.status === 204 ? null : await res.json().catch(() => null);
  if (data && typeof data === 'object' && 'csrf_token' in data) csrf = data.csrf_token;
  return { res, data };
}

/** GET /auth/csrf: the token of the current session, or null when there is no session. */
async function refreshCsrf() {
  await send('GET', '/auth/csrf');
  return csrf;
}

/**
 * Calls the API and returns the JSON body (null for 204). Throws ApiError on failure.
 * Unsafe methods carry the CSRF token; a missing or stale token is refreshed once.
 */
async function api(method, path, body) {
  const unsafe = method !== 'GET';
  // No token yet: a session may exist anyway (e.g. the anonymous counter created one).
  if (unsafe && csrf === null) await refreshCsrf();
  let { res, data } = await send(method, path, body);
  if (unsafe && res.status === 403 && CSRF_ERRORS.has(data?.code)) {
    await refreshCsrf();
    ({ res, data } = await send(method, path, body));
  }
  if (!res.ok) {
    // 401: the session is gone (expired, revoked or never existed), so is its token.
    if (res.status === 401) csrf = null;
    throw new ApiError(res.status, data);
  }
  return data;
}

// ---------------------------------------------------------------------------
// Rendering
// ---------------------------------------------------------------------------

function setStatus(text) {
  $('#status').textContent = text;
}

function showError(err) {
  const box = $('#error');
  box.replaceChildren();
  if (!err) return;
  const head = document.createElement('p');
  const code = document.createElement('code');
  code.textContent = err.code || 'error';
  head.append(code, ` ${err.message}`);
  box.append(head);
  if (err.hint) {
    const hint = document.createElement('p');
    hint.className = 'error-hint';
    hint.textContent = `Hint: ${err.hint}`;
    box.append(hint);
  }
}

function formatDate(value) {
  if (!value) return '—';
  const d = new Date(value);
  return Number.isNaN(d.getTime()) ? value : d.toLocaleString();
}

function renderMe(user) {
  const me = $('#me');
  me.replaceChildren();
  if (user) {
    const name = document.createElement('strong');
    name.textContent = user.username;
    me.append('Signed in as ', name);
  } else {
    me.textContent = 'Not signed in';
  }
  document.body.classList.toggle('signed-in', Boolean(user));
}

function renderCounter(n) {
  $('#counter').textContent = String(n);
}

function cell(text, className) {
  const td = document.createElement('td');
  td.textContent = text;
  if (className) td.className = className;
  return td;
}

function renderSessions(sessions) {
  const tbody = $('#sessions tbody');
  tbody.replaceChildren();
  if (!sessions) {
    const td = cell('Sign in to list your sessions.', 'empty');
    td.colSpan = 5;
    const tr = document.createElement('tr');
    tr.append(td);
    tbody.append(tr);
    return;
  }
  for (const s of sessions) {
    const tr = document.createElement('tr');
    if (s.current) tr.className = 'current';
    const agent = cell(s.user_agent || 'unknown', 'agent');
    agent.title = s.user_agent || '';
    if (s.current) {
      const badge = document.createElement('span');
      badge.className = 'badge';
      badge.textContent = 'this browser';
      agent.prepend(badge, ' ');
    }
    const action = document.createElement('td');
    const btn = document.createElement('button');
    btn.type = 'button';
    btn.className = 'revoke';
    btn.dataset.id = s.id;
    btn.textContent = 'Revoke';
    btn.setAttribute('aria-label', s.current ? 'Revoke this session (logs you out)' : 'Revoke session');
    action.append(btn);
    tr.append(
      cell(formatDate(s.created_at)),
      cell(formatDate(s.last_seen)),
      cell(formatDate(s.expires_at)),
      agent,
      action,
    );
    tbody.append(tr);
  }
}

// ---------------------------------------------------------------------------
// Loading state
// ---------------------------------------------------------------------------

/** Reloads who we are, the counter and (when signed in) the session list. */
async function refresh() {
  let user = null;
  try {
    user = (await api('GET', '/auth/me')).user;
  } catch (err) {
    // 401 just means "anonymous": normal, not an error to show.
    if (err.status !== 401) throw err;
  }
  renderMe(user);
  renderCounter((await api('GET', '/demo/counter')).counter);
  renderSessions(user ? (await api('GET', '/auth/sessions')).sessions : null);
  return user;
}

/**
 * Runs one user action: clears the last error, marks the page busy, shows the outcome.
 * `main[aria-busy="false"]` tells an automated test that the action has finished.
 */
async function run(label, action) {
  const main = $('#main');
  main.setAttribute('aria-busy', 'true');
  showError(null);
  setStatus(`${label}…`);
  try {
    const done = await action();
    setStatus(done || `${label}: done`);
  } catch (err) {
    showError(err);
    setStatus(`${label}: failed`);
  } finally {
    main.setAttribute('aria-busy', 'false');
  }
}

function formValues(form) {
  return Object.fromEntries(new FormData(form).entries());
}

// ---------------------------------------------------------------------------
// Event handlers
// ---------------------------------------------------------------------------

$('#signup-form').addEventListener('submit', (event) => {
  event.preventDefault();
  const form = event.currentTarget;
  run('Signing up', async () => {
    const { username, password } = formValues(form);
    const data = await api('POST', '/auth/signup', { username, password });
    form.reset();
    await refresh();
    return `Signed up and signed in as ${data.user.username}`;
  });
});

$('#login-form').addEventListener('submit', (event) => {
  event.preventDefault();
  const form = event.currentTarget;
  run('Logging in', async () => {
    const { username, password } = formValues(form);
    const data = await api('POST', '/auth/login', { username, password });
    form.reset();
    await refresh();
    return `Logged in as ${data.user.username}`;
  });
});

$('#password-form').addEventListener('submit', (event) => {
  event.preventDefault();
  const form = event.currentTarget;
  run('Changing password', async () => {
    const { current_password, new_password } = formValues(form);
    await api('POST', '/auth/password', { current_password, new_password });
    form.reset();
    await refresh();
    return 'Password changed; your other sessions were signed out';
  });
});

$('#logout').addEventListener('click', () => {
  run('Logging out', async () => {
    await api('POST', '/auth/logout');
    csrf = null;
    await refresh();
    return 'Logged out';
  });
});

$('#logout-all').addEventListener('click', () => {
  run('Logging out everywhere', async () => {
    await api('POST', '/auth/logout-all');
    csrf = null;
    await refresh();
    return 'Logged out of every session';
  });
});

$('#counter-inc').addEventListener('click', () => {
  run('Incrementing', async () => {
    const { counter } = await api('POST', '/demo/counter');
    renderCounter(counter);
    return `Counter is now ${counter}`;
  });
});

$('#sessions-refresh').addEventListener('click', () => {
  run('Loading sessions', async () => {
    await refresh();
    return 'Sessions reloaded';
  });
});

// One listener for every revoke button, including rows rendered later.
$('#sessions').addEventListener('click', (event) => {
  const btn = event.target.closest('button.revoke');
  if (!btn) return;
  const current = btn.closest('tr')?.classList.contains('current');
  run('Revoking session', async () => {
    await api('DELETE', `/auth/sessions/${encodeURIComponent(btn.dataset.id)}`);
    if (current) csrf = null;
    await refresh();
    return current ? 'Revoked the current session: you are logged out' : 'Session revoked';
  });
});

// ---------------------------------------------------------------------------
// Start
// ---------------------------------------------------------------------------

run('Loading', async () => {
  const user = await refresh();
  return user ? `Welcome back, ${user.username}` : 'Ready: sign up, log in, or try the counter';
});
