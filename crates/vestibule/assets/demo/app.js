// Vestibule demo: vanilla JS against the /auth API. No build step, no dependencies.

const $ = (selector) => document.querySelector(selector);

// ---------------------------------------------------------------------------
// Transport state
// ---------------------------------------------------------------------------

/** How the session travels: 'cookie' (HttpOnly cookie + CSRF token) or 'bearer'. */
let transport = 'cookie';

/**
 * The bearer session token and its expiry, `{ token, expiresAt }`, or null.
 * Held in this variable only, never in localStorage or sessionStorage: a reload forgets it, so a
 * script injected into the page later cannot read it back from storage.
 */
let bearer = null;

/** Why the last bearer token was dropped by the server (shown until the next login). */
let bearerDropped = '';

// The latest CSRF token (cookie transport only). The session cookie is HttpOnly, so the token
// comes from response bodies: login, signup, /auth/me, /auth/csrf and /auth/password all return
// `csrf_token`. Bearer requests need none (the server answers `csrf_token: null` for them).
let csrf = null;

const CSRF_ERRORS = new Set(['csrf_token_mismatch', 'csrf_token_missing']);

// ---------------------------------------------------------------------------
// API client
// ---------------------------------------------------------------------------

/** An API error: the JSON body `{code, message, hint}` plus the HTTP status. */
class ApiError extends Error {
  constructor(status, body) {
    super(body?.message || `HTTP ${status}`);
    this.status = status;
    this.code = body?.code || 'http_error';
    this.hint = body?.hint || '';
  }
}

/**
 * One fetch with the current transport.
 * Cookie: sends the cookie and the CSRF token, remembers any `csrf_token` in the answer.
 * Bearer: sends `Authorization: Bearer <token>` (when `token` is given) and never a cookie.
 */
async function send(method, path, body, token) {
  const mode = transport;
  const headers = { Accept: 'application/json' };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  if (mode === 'cookie') {
    if (method !== 'GET' && csrf) headers['X-CSRF-Token'] = csrf;
  } else if (token) {
    headers.Authorization = `Bearer ${token}`;
  }
  let res;
  try {
    res = await fetch(path, {
      method,
      credentials: mode === 'cookie' ? 'include' : 'omit',
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (err) {
    throw new ApiError(0, { code: 'network_error', message: String(err.message || err), hint: 'is the server running?' });
  }
  const data = res.status === 204 ? null : await res.json().catch(() => null);
  if (mode === 'cookie' && data && typeof data === 'object' && 'csrf_token' in data) csrf = data.csrf_token;
  return { res, data };
}

/** GET /auth/csrf: the token of the current cookie session, or null when there is none. */
async function refreshCsrf() {
  await send('GET', '/auth/csrf');
  return csrf;
}

/**
 * Calls the API and returns the JSON body (null for 204). Throws ApiError on failure.
 * Cookie: unsafe methods carry the CSRF token; a missing or stale token is refreshed once.
 * Bearer: the held token goes in Authorization, unless `{ auth: false }` (login, signup).
 */
async function api(method, path, body, { auth = true } = {}) {
  if (transport === 'bearer') {
    const token = auth ? bearer?.token : null;
    const { res, data } = await send(method, path, body, token);
    if (!res.ok) {
      // The held token names no live session any more (revoked, expired, password changed
      // elsewhere): forget it, we are signed out.
      if (res.status === 401 && data?.code === 'invalid_token' && token && bearer?.token === token) {
        dropBearer('the server refused the last token (revoked or expired) and this page dropped it');
        renderSignedOut();
      }
      throw new ApiError(res.status, data);
    }
    return data;
  }
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

/** Keeps the bearer token from a login, signup or password-change answer. */
function holdBearer(data) {
  if (data && typeof data.token === 'string') {
    bearer = { token: data.token, expiresAt: data.expires_at || null };
    bearerDropped = '';
  }
  renderTransport();
}

function dropBearer(reason = '') {
  bearer = null;
  bearerDropped = reason;
  renderTransport();
}

/** Ends a bearer session this page no longer uses (best effort: it may be gone already). */
async function endBearerSession(token) {
  try {
    await send('POST', '/auth/logout', undefined, token);
  } catch {
    // Not worth an error: the session expires on its own.
  }
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

/** A compact date for table cells (date, then time below); the full one goes in the tooltip. */
function dateCell(value, empty = '—') {
  if (!value) return cell(empty);
  const d = new Date(value);
  if (Number.isNaN(d.getTime())) return cell(value);
  const td = cell(d.toLocaleDateString(undefined, { dateStyle: 'short' }), 'date');
  const time = document.createElement('span');
  time.className = 'time';
  time.textContent = d.toLocaleTimeString(undefined, { timeStyle: 'short' });
  td.append(' ', time);
  td.title = d.toLocaleString();
  return td;
}

/** The first characters of a secret, enough to tell tokens apart, never the whole thing. */
function preview(token) {
  return `${token.slice(0, 12)}…`;
}

function codeEl(text) {
  const c = document.createElement('code');
  c.textContent = text;
  return c;
}

function renderTransport() {
  const info = $('#transport-info');
  info.replaceChildren();
  const label = document.createElement('strong');
  if (transport === 'cookie') {
    label.textContent = 'cookie session';
    info.append('Active: ', label, ': an HttpOnly cookie, plus ', codeEl('X-CSRF-Token'), ' on writes.');
    if (bearer) info.append(' A bearer token is still held in memory for bearer mode.');
  } else {
    label.textContent = 'bearer token';
    info.append('Active: ', label, ': ');
    if (bearer) {
      info.append(codeEl(preview(bearer.token)), `, expires ${formatDate(bearer.expiresAt)} (slides forward with use). No cookie is sent.`);
    } else {
      info.append(bearerDropped ? `none held: ${bearerDropped}.` : 'none held yet.', ' Log in or sign up to get one. No cookie is sent.');
    }
  }
  document.body.dataset.transport = transport;
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
  // For password managers: the account whose password the password form changes.
  $('#password-username').value = user ? user.username : '';
  // Access tokens can only be managed with a session.
  $('#token-fieldset').disabled = !user;
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

function emptyRow(tbody, text, columns) {
  const td = cell(text, 'empty');
  td.colSpan = columns;
  const tr = document.createElement('tr');
  tr.append(td);
  tbody.append(tr);
}

function pill(text, className) {
  const span = document.createElement('span');
  span.className = `pill ${className}`;
  span.textContent = text;
  return span;
}

function renderSessions(sessions) {
  const tbody = $('#sessions tbody');
  tbody.replaceChildren();
  if (!sessions) {
    emptyRow(tbody, 'Sign in to list your sessions.', 6);
    return;
  }
  for (const s of sessions) {
    const tr = document.createElement('tr');
    if (s.current) tr.className = 'current';
    const kind = s.transport === 'bearer' ? 'bearer' : 'cookie';
    const via = document.createElement('td');
    via.className = 'transport';
    via.append(pill(kind, `pill-${kind}`));
    const agent = cell(s.user_agent || 'unknown', 'agent');
    agent.title = s.user_agent || '';
    if (s.current) {
      const badge = document.createElement('span');
      badge.className = 'badge';
      badge.textContent = kind === 'bearer' ? 'this page' : 'this browser';
      agent.prepend(badge, ' ');
    }
    const action = document.createElement('td');
    action.className = 'action';
    const btn = document.createElement('button');
    btn.type = 'button';
    btn.className = 'revoke';
    btn.dataset.id = s.id;
    btn.textContent = 'Revoke';
    btn.setAttribute('aria-label', s.current ? 'Revoke this session (logs you out)' : 'Revoke session');
    action.append(btn);
    tr.append(
      dateCell(s.created_at),
      dateCell(s.last_seen),
      dateCell(s.expires_at),
      via,
      agent,
      action,
    );
    tbody.append(tr);
  }
}

function renderTokens(tokens) {
  const tbody = $('#tokens tbody');
  tbody.replaceChildren();
  if (!tokens) {
    emptyRow(tbody, 'Sign in to manage your access tokens.', 7);
    return;
  }
  if (tokens.length === 0) {
    emptyRow(tbody, 'No access tokens yet.', 7);
    return;
  }
  const nowMs = Date.now();
  for (const t of tokens) {
    const tr = document.createElement('tr');
    const expired = Boolean(t.expires_at) && new Date(t.expires_at).getTime() <= nowMs;
    if (expired) tr.className = 'expired';
    const expires = dateCell(t.expires_at);
    if (expired) expires.prepend('expired ');
    const name = cell(t.name, 'token-name');
    name.title = t.name;
    const prefix = document.createElement('td');
    prefix.append(codeEl(`${t.prefix}…`));
    const scopes = document.createElement('td');
    scopes.className = 'scopes-cell';
    for (const s of t.scopes || []) scopes.append(pill(s, `pill-${s === 'write' ? 'write' : 'read'}`), ' ');
    const action = document.createElement('td');
    action.className = 'action';
    const btn = document.createElement('button');
    btn.type = 'button';
    btn.className = 'revoke-token';
    btn.dataset.id = String(t.id);
    btn.textContent = 'Revoke';
    btn.setAttribute('aria-label', `Revoke access token ${t.name}`);
    action.append(btn);
    tr.append(
      name,
      prefix,
      scopes,
      dateCell(t.created_at),
      dateCell(t.last_used_at, 'never'),
      expires,
      action,
    );
    tbody.append(tr);
  }
}

/** Shows a freshly created access token: the only time its secret is ever visible. */
function renderNewToken(t) {
  const box = $('#new-token');
  box.replaceChildren();
  if (!t) return;
  const head = document.createElement('p');
  const title = document.createElement('strong');
  title.textContent = `New access token “${t.name}”`;
  head.append(title, ` (scopes: ${(t.scopes || []).join(', ')}; expires ${formatDate(t.expires_at)})`);
  const row = document.createElement('div');
  row.className = 'secret-row';
  const secret = codeEl(t.token);
  secret.id = 'new-token-value';
  secret.className = 'secret';
  const copy = document.createElement('button');
  copy.type = 'button';
  copy.id = 'copy-token';
  copy.textContent = 'Copy';
  row.append(secret, copy);
  const warn = document.createElement('p');
  warn.className = 'warn';
  warn.textContent = 'Copy it now, it will not be shown again.';
  const usage = document.createElement('p');
  usage.className = 'hint';
  usage.append('Use it from a script: ', codeEl(`curl -H "Authorization: Bearer ${t.prefix}…" ${location.origin}/auth/me`));
  box.append(head, row, warn, usage);
}

/** Clears every view of the signed-in user (the credential is gone). */
function renderSignedOut() {
  renderMe(null);
  renderSessions(null);
  renderTokens(null);
  if (transport === 'bearer') renderCounter(0);
}

// ---------------------------------------------------------------------------
// Loading state
// ---------------------------------------------------------------------------

async function loadTokens() {
  renderTokens((await api('GET', '/auth/tokens')).tokens);
}

/** Reloads who we are, the counter and (when signed in) the sessions and access tokens. */
async function refresh() {
  renderTransport();
  // Bearer mode without a token: nobody is signed in and there is no session to read.
  if (transport === 'bearer' && !bearer) {
    renderSignedOut();
    return null;
  }
  let user = null;
  try {
    user = (await api('GET', '/auth/me')).user;
  } catch (err) {
    // 401 just means "anonymous": normal, not an error to show.
    if (err.status !== 401) throw err;
  }
  renderMe(user);
  if (transport === 'bearer' && !bearer) {
    renderSignedOut();
    return null;
  }
  renderCounter((await api('GET', '/demo/counter')).counter);
  renderSessions(user ? (await api('GET', '/auth/sessions')).sessions : null);
  renderTokens(user ? (await api('GET', '/auth/tokens')).tokens : null);
  return user;
}

// Actions run one at a time, in order: a transport switch never interleaves with a request
// made under the other transport.
let queue = Promise.resolve();
let pending = 0;

/**
 * Runs one user action: clears the last error, marks the page busy, shows the outcome.
 * `main[aria-busy="false"]` tells an automated test that every queued action has finished.
 */
function run(label, action) {
  const main = $('#main');
  pending += 1;
  main.setAttribute('aria-busy', 'true');
  queue = queue.then(async () => {
    showError(null);
    renderNewToken(null);
    setStatus(`${label}…`);
    try {
      const done = await action();
      setStatus(done || `${label}: done`);
    } catch (err) {
      showError(err);
      setStatus(`${label}: failed`);
    } finally {
      pending -= 1;
      if (pending === 0) main.setAttribute('aria-busy', 'false');
    }
  });
  return queue;
}

function formValues(form) {
  return Object.fromEntries(new FormData(form).entries());
}

/** Login or signup with the current transport; bearer mode keeps the token it answers. */
async function signIn(path, username, password) {
  if (transport === 'cookie') return api('POST', path, { username, password });
  const old = bearer?.token;
  const data = await api('POST', path, { username, password, transport: 'bearer' }, { auth: false });
  holdBearer(data);
  // This page holds one token: end the session of the one it replaces.
  if (old && old !== bearer?.token) await endBearerSession(old);
  return data;
}

// ---------------------------------------------------------------------------
// Event handlers
// ---------------------------------------------------------------------------

for (const radio of document.querySelectorAll('input[name="transport"]')) {
  radio.addEventListener('change', () => {
    if (!radio.checked) return;
    const next = radio.value === 'bearer' ? 'bearer' : 'cookie';
    run(`Switching to ${next === 'bearer' ? 'bearer token' : 'cookie session'}`, async () => {
      transport = next;
      renderSignedOut();
      renderCounter(0);
      const user = await refresh();
      const mode = next === 'bearer' ? 'Bearer token' : 'Cookie session';
      return user ? `${mode}: signed in as ${user.username}` : `${mode}: not signed in`;
    });
  });
}

$('#signup-form').addEventListener('submit', (event) => {
  event.preventDefault();
  const form = event.currentTarget;
  run('Signing up', async () => {
    const { username, password } = formValues(form);
    const data = await signIn('/auth/signup', username, password);
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
    const data = await signIn('/auth/login', username, password);
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
    const data = await api('POST', '/auth/password', { current_password, new_password });
    // Bearer: the session rotated, so the old token is dead and the answer carries the new one.
    if (transport === 'bearer') holdBearer(data);
    form.reset();
    await refresh();
    return transport === 'bearer'
      ? 'Password changed; your other sessions were signed out and this page holds a new token'
      : 'Password changed; your other sessions were signed out';
  });
});

$('#logout').addEventListener('click', () => {
  run('Logging out', async () => {
    if (transport === 'bearer') {
      if (!bearer) return 'No bearer token held: nothing to log out';
      try {
        await api('POST', '/auth/logout');
      } catch (err) {
        // invalid_token: the session was already gone, which is what we wanted.
        if (err.code !== 'invalid_token') throw err;
      }
      dropBearer();
    } else {
      await api('POST', '/auth/logout');
      csrf = null;
    }
    await refresh();
    return 'Logged out';
  });
});

$('#logout-all').addEventListener('click', () => {
  run('Logging out everywhere', async () => {
    await api('POST', '/auth/logout-all');
    if (transport === 'bearer') dropBearer();
    else csrf = null;
    await refresh();
    return 'Logged out of every session';
  });
});

$('#counter-inc').addEventListener('click', () => {
  run('Incrementing', async () => {
    if (transport === 'bearer' && !bearer) {
      throw new ApiError(0, {
        code: 'no_token',
        message: 'bearer mode: this page holds no token yet',
        hint: 'log in or sign up first: without the cookie there is no anonymous session to count in',
      });
    }
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
    if (current) {
      if (transport === 'bearer') dropBearer();
      else csrf = null;
    }
    await refresh();
    return current ? 'Revoked the current session: you are logged out' : 'Session revoked';
  });
});

$('#token-form').addEventListener('submit', (event) => {
  event.preventDefault();
  const form = event.currentTarget;
  run('Creating access token', async () => {
    const body = { name: form.elements.name.value };
    const days = form.elements.expires_in_days.value.trim();
    if (days !== '') body.expires_in_days = Number(days);
    body.scopes = ['read', 'write'].filter((s) => form.elements[`scope-${s}`].checked);
    const created = await api('POST', '/auth/tokens', body);
    // Shown now and never again; cleared by the next action.
    renderNewToken(created);
    form.reset();
    await loadTokens();
    return `Access token “${created.name}” created: copy it now`;
  });
});

$('#tokens').addEventListener('click', (event) => {
  const btn = event.target.closest('button.revoke-token');
  if (!btn) return;
  run('Revoking access token', async () => {
    await api('DELETE', `/auth/tokens/${encodeURIComponent(btn.dataset.id)}`);
    await loadTokens();
    return 'Access token revoked';
  });
});

// Copying is not an action: it must not clear the secret it copies.
$('#new-token').addEventListener('click', async (event) => {
  if (!event.target.closest('#copy-token')) return;
  const secret = $('#new-token-value');
  if (!secret) return;
  try {
    await navigator.clipboard.writeText(secret.textContent);
    setStatus('Access token copied to the clipboard');
  } catch {
    // No clipboard permission: select the text so the user can copy it by hand.
    const range = document.createRange();
    range.selectNodeContents(secret);
    const sel = window.getSelection();
    sel.removeAllRanges();
    sel.addRange(range);
    setStatus('Press Ctrl+C (⌘C) to copy the selected token');
  }
});

// ---------------------------------------------------------------------------
// Start
// ---------------------------------------------------------------------------

// A reload may restore a checked radio from the form cache: start from the default.
$('#transport-cookie').checked = true;

run('Loading', async () => {
  const user = await refresh();
  return user ? `Welcome back, ${user.username}` : 'Ready: sign up, log in, or try the counter';
});
