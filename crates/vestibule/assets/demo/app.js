// Vestibule demo: vanilla JS against the /auth API through vestibule-client, the very file the
// npm package ships (served by this binary at /_vestibule/client.js). No build step.

import { createClient, VestibuleError } from '/_vestibule/client.js';

const $ = (selector) => document.querySelector(selector);

// ---------------------------------------------------------------------------
// Transport state
// ---------------------------------------------------------------------------

/** How the session travels: 'cookie' (HttpOnly cookie + CSRF token) or 'bearer'. */
let transport = 'cookie';

/** Why the last bearer token was dropped by the server (shown until the next login). */
let bearerDropped = '';

// One client per transport. The cookie client sends `credentials: 'include'` and the CSRF token
// (taken from login/me/csrf answers, refreshed once on a mismatch). The bearer client holds its
// token in memory only, never in localStorage or sessionStorage: a reload forgets it, so a
// script injected into the page later cannot read it back from storage.
const clients = {
  cookie: createClient({ transport: 'cookie' }),
  bearer: createClient({
    transport: 'bearer',
    // The held token names no live session any more (revoked, expired, password changed
    // elsewhere): the client dropped it; we are signed out.
    onUnauthenticated: (err) => {
      if (err.code !== 'invalid_token') return;
      bearerDropped = 'the server refused the last token (revoked or expired) and this page dropped it';
      renderTransport();
      renderSignedOut();
    },
  }),
};

/** The client of the current transport. */
const client = () => clients[transport];

/** The bearer token held by this page, or null. */
const bearerToken = () => clients.bearer.getToken();

/** Calls the API with the current transport and returns the JSON body (null for 204). */
function api(method, path, body) {
  return client().request(path, { method, body });
}

/** Ends a bearer session this page no longer uses (best effort: it may be gone already). */
async function endBearerSession(token) {
  try {
    await clients.bearer.fetch('/auth/logout', { method: 'POST', headers: { Authorization: `Bearer ${token}` } });
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

/** Empties every error box (the page's and each form's). */
function clearErrors() {
  for (const box of document.querySelectorAll('.error')) box.replaceChildren();
}

/**
 * Shows `err` in the box `at` (the failed form's own, so the message appears where the user
 * clicked, not in a box scrolled out of view) and moves focus to it: `role="alert"` announces
 * it, and keyboard users land on it. Without `at`, the page's box at the top.
 */
function showError(err, at = '#error') {
  const box = $(at) || $('#error');
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
  box.focus();
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
    if (bearerToken()) info.append(' A bearer token is still held in memory for bearer mode.');
  } else {
    label.textContent = 'bearer token';
    info.append('Active: ', label, ': ');
    const token = bearerToken();
    if (token) {
      info.append(codeEl(preview(token)), ', held in memory (its expiry slides forward with use). No cookie is sent.');
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
  // Show what fits the state: sign-up and log-in forms only while signed out; log out, the
  // sessions, tokens, second factor, password and re-authentication panels only while signed in.
  for (const el of document.querySelectorAll('[data-when]')) {
    el.hidden = el.dataset.when !== (user ? 'signed-in' : 'signed-out');
  }
  if (user) showMfaStep(null);
  else renderMfaStatus(null);
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
    // The server's short label ("Chrome 156 on Linux"); the raw User-Agent on hover.
    const agent = cell(s.browser || s.user_agent || 'unknown', 'agent');
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

/** Shows the second-factor step of a login (`pending`: the login's `MfaRequired` answer) or hides it. */
function showMfaStep(pending) {
  $('#mfa-form').hidden = !pending;
  $('#login-form').hidden = Boolean(pending);
  $('#mfa-passkey').hidden = !pending || !pending.methods.includes('webauthn');
  if (pending) $('#mfa-code').focus();
}

/** The signed-in user's factors (`GET /auth/mfa`), or null when signed out. */
function renderMfaStatus(status) {
  const el = $('#mfa-status');
  if (!status) {
    el.textContent = 'No second factor yet';
    return;
  }
  const parts = [];
  if (status.totp) parts.push('authenticator app on');
  if (status.passkeys > 0) parts.push(`${plural(status.passkeys, 'passkey')}`);
  el.textContent = parts.length === 0
    ? 'No second factor yet: the password alone logs in'
    : `Second factor: ${parts.join(', ')}; ${plural(status.recovery_codes_left, 'recovery code')} left`;
  $('#totp-enroll').hidden = status.totp;
  if (status.totp) $('#totp-setup').hidden = true;
}

/** Shows fresh recovery codes: the only time they are ever visible. */
function renderRecoveryCodes(codes) {
  const box = $('#recovery-codes');
  box.replaceChildren();
  if (!codes || codes.length === 0) return;
  const head = document.createElement('p');
  const title = document.createElement('strong');
  title.textContent = 'Your recovery codes';
  head.append(title, ': each one logs in once when your authenticator or passkey is not at hand.');
  const list = document.createElement('ol');
  list.className = 'codes';
  for (const code of codes) {
    const li = document.createElement('li');
    li.append(codeEl(code));
    list.append(li);
  }
  const warn = document.createElement('p');
  warn.className = 'warn';
  warn.textContent = 'Write them down now: they will not be shown again.';
  box.append(head, list, warn);
}

/** `1 passkey`, `2 passkeys`. */
function plural(n, noun) {
  return `${n} ${noun}${n === 1 ? '' : 's'}`;
}

/** "2 other sessions and 1 access token were ended", from a password change's `ended` counts. */
function endedMessage(ended) {
  /** @type {[string, number][]} what ended, and how many (for "was" / "were") */
  const items = [];
  // null: the cookie session store cannot count them, but every other session ended.
  if (ended.sessions === null) items.push(['every other session', 1]);
  else if (ended.sessions > 0) items.push([plural(ended.sessions, 'other session'), ended.sessions]);
  if (ended.access_tokens > 0) items.push([plural(ended.access_tokens, 'access token'), ended.access_tokens]);
  if (items.length === 0) return 'no other session or access token was ended';
  const singular = items.length === 1 && items[0][1] === 1;
  return `${items.map(([text]) => text).join(' and ')} ${singular ? 'was' : 'were'} ended`;
}

/** Clears every view of the signed-in user (the credential is gone). */
function renderSignedOut() {
  renderMe(null);
  showMfaStep(null);
  renderSessions(null);
  renderTokens(null);
  renderEmailStatus(null);
  if (transport === 'bearer') renderCounter(0);
}

// ---------------------------------------------------------------------------
// Loading state
// ---------------------------------------------------------------------------

async function loadTokens() {
  renderTokens(await client().tokens.list());
}

/** Reloads who we are, the counter and (when signed in) the sessions and access tokens. */
async function refresh() {
  renderTransport();
  // Bearer mode without a token: nobody is signed in and there is no session to read.
  if (transport === 'bearer' && !bearerToken()) {
    renderSignedOut();
    return null;
  }
  // null just means "anonymous": normal, not an error to show.
  const user = await client().me();
  renderMe(user);
  if (transport === 'bearer' && !bearerToken()) {
    renderSignedOut();
    return null;
  }
  renderCounter((await api('GET', '/demo/counter')).counter);
  renderSessions(user ? await client().sessions.list() : null);
  renderTokens(user ? await client().tokens.list() : null);
  renderMfaStatus(user ? await client().mfa.status() : null);
  renderEmailStatus(user ? await client().email.status() : null);
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
function run(label, action, errorAt) {
  const main = $('#main');
  pending += 1;
  main.setAttribute('aria-busy', 'true');
  queue = queue.then(async () => {
    clearErrors();
    renderNewToken(null);
    renderRecoveryCodes(null);
    $('#password-result').textContent = '';
    setStatus(`${label}…`);
    try {
      const done = await action();
      setStatus(done || `${label}: done`);
    } catch (err) {
      showError(err, errorAt);
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
async function signIn(kind, username, password, email) {
  const c = client();
  const old = bearerToken();
  const user = kind === 'signup' ? await c.signup({ username, password, email }) : await c.login({ username, password });
  if (transport === 'bearer') {
    bearerDropped = '';
    renderTransport();
    // This page holds one token: end the session of the one it replaces.
    if (old && old !== bearerToken()) await endBearerSession(old);
  }
  return user;
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
    const { username, password, email } = formValues(form);
    const user = await signIn('signup', username, password, email);
    form.reset();
    if (user.email_verification_required) {
      return `Signed up: follow the link sent to ${user.email}, then log in`;
    }
    await refresh();
    return `Signed up and signed in as ${user.username}`;
  }, '#signup-error');
});

$('#login-form').addEventListener('submit', (event) => {
  event.preventDefault();
  const form = event.currentTarget;
  run('Logging in', async () => {
    const { username, password } = formValues(form);
    const user = await signIn('login', username, password);
    form.reset();
    if (user.mfa_required) {
      // No refresh here: the pending login is not a session yet (/auth/me answers 401, and a
      // bearer client would drop the pending token it needs for the second factor).
      showMfaStep(user);
      return 'Password accepted: enter a code from your authenticator app, a recovery code, or use a passkey';
    }
    await refresh();
    return `Logged in as ${user.username}`;
  }, '#login-error');
});

/** Finishes a login waiting for its second factor. */
async function finishMfa(prove) {
  const user = await prove();
  showMfaStep(null);
  renderTransport();
  await refresh();
  return `Logged in as ${user.username} with a second factor`;
}

$('#mfa-form').addEventListener('submit', (event) => {
  event.preventDefault();
  const form = event.currentTarget;
  run('Verifying the second factor', async () => {
    const code = String(formValues(form).code || '').trim();
    // Six digits: a TOTP code; anything else: a recovery code (each works once).
    const done = await finishMfa(() => (/^\d{6}$/.test(code) ? client().mfa.totp(code) : client().mfa.recovery(code)));
    form.reset();
    return done;
  }, '#login-error');
});

$('#mfa-passkey').addEventListener('click', () => {
  run('Verifying with a passkey', () => finishMfa(() => client().mfa.webauthn()), '#login-error');
});

$('#passkey-login').addEventListener('click', () => {
  run('Logging in with a passkey', async () => {
    const user = await client().passkeys.login();
    await refresh();
    return `Logged in as ${user.username} with a passkey`;
  }, '#login-error');
});

$('#totp-enroll').addEventListener('click', () => {
  run('Setting up an authenticator app', async () => {
    const enrolment = await client().totp.enroll();
    // The server's own SVG (no script, no style attribute: the page's CSP allows neither).
    const svg = new DOMParser().parseFromString(enrolment.qr_svg, 'image/svg+xml').documentElement;
    const qr = $('#totp-qr');
    qr.replaceChildren();
    if (svg && svg.nodeName === 'svg') {
      svg.setAttribute('role', 'img');
      svg.setAttribute('aria-label', 'QR code of the authenticator secret');
      qr.append(document.importNode(svg, true));
    }
    $('#totp-secret').textContent = enrolment.secret;
    $('#totp-setup').hidden = false;
    $('#totp-code').focus();
    return 'Scan the QR code (or type the secret), then enter the code your app shows';
  }, '#mfa-error');
});

$('#totp-form').addEventListener('submit', (event) => {
  event.preventDefault();
  const form = event.currentTarget;
  run('Turning on the authenticator app', async () => {
    const codes = await client().totp.confirm(String(formValues(form).code || '').trim());
    form.reset();
    $('#totp-setup').hidden = true;
    $('#totp-secret').textContent = '';
    $('#totp-qr').replaceChildren();
    renderMfaStatus(await client().mfa.status());
    renderRecoveryCodes(codes);
    return 'Authenticator app on: logins now ask for its code. Write down your recovery codes';
  }, '#mfa-error');
});

$('#passkey-register').addEventListener('click', () => {
  run('Adding a passkey', async () => {
    const made = await client().passkeys.register({ name: 'This browser' });
    renderMfaStatus(await client().mfa.status());
    renderRecoveryCodes(made.recovery_codes);
    return made.recovery_codes
      ? 'Passkey added: it logs in without a password. Write down your recovery codes'
      : 'Passkey added: it logs in without a password';
  }, '#mfa-error');
});

$('#password-form').addEventListener('submit', (event) => {
  event.preventDefault();
  const form = event.currentTarget;
  run('Changing password', async () => {
    const { current_password, new_password } = formValues(form);
    // Bearer: the session rotates, so the old token dies and the client keeps the new one.
    const { ended } = await client().changePassword({ currentPassword: current_password, newPassword: new_password });
    renderTransport();
    form.reset();
    await refresh();
    // Say what ended: a revoked token otherwise just vanishes from the list below.
    const what = endedMessage(ended);
    $('#password-result').textContent = `Password changed: ${what}.`;
    return transport === 'bearer'
      ? `Password changed: ${what}; this page holds a new token`
      : `Password changed: ${what}`;
  }, '#password-error');
});

$('#reauth-form').addEventListener('submit', (event) => {
  event.preventDefault();
  const form = event.currentTarget;
  run('Confirming', async () => {
    const { password, code } = formValues(form);
    const factor = String(code || '').trim();
    // Six digits: a TOTP code; anything else typed: a recovery code; empty: the password alone.
    const proof = factor === ''
      ? { password }
      : /^\d{6}$/.test(factor) ? { password, code: factor } : { password, recoveryCode: factor };
    const answer = await client().reauth(proof);
    form.reset();
    return answer.second_factor
      ? 'Confirmed with a second factor: sensitive actions and factor changes are allowed for 10 minutes'
      : 'Password confirmed: sensitive actions are allowed for 10 minutes';
  }, '#reauth-error');
});

$('#logout').addEventListener('click', () => {
  run('Logging out', async () => {
    if (transport === 'bearer' && !bearerToken()) return 'No bearer token held: nothing to log out';
    // Resolves even when the session was already gone, which is what we wanted.
    await client().logout();
    renderTransport();
    await refresh();
    return 'Logged out';
  }, '#me-error');
});

$('#logout-all').addEventListener('click', () => {
  run('Logging out everywhere', async () => {
    await client().sessions.logoutAll();
    renderTransport();
    await refresh();
    return 'Logged out of every session';
  }, '#me-error');
});

$('#counter-inc').addEventListener('click', () => {
  run('Incrementing', async () => {
    if (transport === 'bearer' && !bearerToken()) {
      throw new VestibuleError({
        status: 0,
        code: 'no_token',
        message: 'bearer mode: this page holds no token yet',
        hint: 'log in or sign up first: without the cookie there is no anonymous session to count in',
      });
    }
    const { counter } = await api('POST', '/demo/counter');
    renderCounter(counter);
    return `Counter is now ${counter}`;
  }, '#counter-error');
});

$('#sessions-refresh').addEventListener('click', () => {
  run('Loading sessions', async () => {
    await refresh();
    return 'Sessions reloaded';
  }, '#sessions-error');
});

// One listener for every revoke button, including rows rendered later.
$('#sessions').addEventListener('click', (event) => {
  const btn = event.target.closest('button.revoke');
  if (!btn) return;
  const current = btn.closest('tr')?.classList.contains('current');
  run('Revoking session', async () => {
    await client().sessions.revoke(btn.dataset.id);
    // The current session is gone: forget its credential too (a bearer token is dead now).
    if (current) await client().logout();
    renderTransport();
    await refresh();
    return current ? 'Revoked the current session: you are logged out' : 'Session revoked';
  }, '#sessions-error');
});

$('#token-form').addEventListener('submit', (event) => {
  event.preventDefault();
  const form = event.currentTarget;
  run('Creating access token', async () => {
    const days = form.elements.expires_in_days.value.trim();
    const created = await client().tokens.create({
      name: form.elements.name.value,
      expiresInDays: days === '' ? undefined : Number(days),
      scopes: ['read', 'write'].filter((s) => form.elements[`scope-${s}`].checked),
    });
    // Shown now and never again; cleared by the next action.
    renderNewToken(created);
    form.reset();
    await loadTokens();
    return `Access token “${created.name}” created: copy it now`;
  }, '#tokens-error');
});

$('#tokens').addEventListener('click', (event) => {
  const btn = event.target.closest('button.revoke-token');
  if (!btn) return;
  run('Revoking access token', async () => {
    await client().tokens.revoke(btn.dataset.id);
    await loadTokens();
    return 'Access token revoked';
  }, '#tokens-error');
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
// Email: "Forgot password?", and the pages the links open (/reset, /verify ?token=…)
// ---------------------------------------------------------------------------

$('#forgot-form').addEventListener('submit', (event) => {
  event.preventDefault();
  const form = event.currentTarget;
  run('Asking for a link', async () => {
    const { login } = formValues(form);
    await client().password.forgot(login);
    form.reset();
    return 'If an account has this username or address, a link is on its way to its address';
  }, '#forgot-error');
});

const linkToken = new URLSearchParams(window.location.search).get('token');

$('#reset-form').addEventListener('submit', (event) => {
  event.preventDefault();
  const form = event.currentTarget;
  run('Setting the new password', async () => {
    const { password } = formValues(form);
    await client().password.reset({ token: linkToken, newPassword: password });
    form.reset();
    form.hidden = true;
    $('#forgot-form').hidden = false;
    window.history.replaceState(null, '', '/');
    return 'Password set: every session ended; log in with the new password';
  }, '#forgot-error');
});

if (linkToken && window.location.pathname === '/reset') {
  $('#forgot-form').hidden = true;
  $('#reset-form').hidden = false;
  $('#reset-password').focus();
}

if (linkToken && window.location.pathname === '/verify') {
  run('Verifying the address', async () => {
    const { email } = await client().email.verify(linkToken);
    window.history.replaceState(null, '', '/');
    return `Address ${email} verified`;
  });
}

/** "Verify your address" with a resend button, while the signed-in account's address is not verified. */
function renderEmailStatus(status) {
  const unverified = Boolean(status && status.email && !status.verified);
  $('#verify-banner').hidden = !unverified;
  $('#verify-email').textContent = unverified ? status.email : '';
}

$('#verify-resend').addEventListener('click', () => {
  run('Sending the link again', async () => {
    const email = $('#verify-email').textContent;
    await client().email.resend(email);
    return `A new link is on its way to ${email}`;
  }, '#me-error');
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

// ---------------------------------------------------------------------------
// Sign in with an OpenID provider ([[oidc.provider]]): one button per provider; a refused
// login comes back with ?oidc_error=<code>.
// ---------------------------------------------------------------------------

{
  const refused = new URLSearchParams(window.location.search).get('oidc_error');
  if (refused) {
    showError({ code: refused, message: 'the sign-in through the provider was refused' }, '#login-error');
  }
  clients.cookie.oidc.providers().then((providers) => {
    for (const p of providers) {
      const button = document.createElement('button');
      button.type = 'button';
      button.textContent = `Sign in with ${p.label}`;
      button.addEventListener('click', () => clients.cookie.oidc.login(p.name, { returnTo: window.location.pathname }));
      $('#oidc-buttons').append(button);
    }
  }, () => {});
}
