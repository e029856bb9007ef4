// vestibule-client against a real `vestibule serve` (random port, temporary directory).
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';

import { createClient, sessionStorageAdapter, VestibuleError } from '../src/index.js';
import { cookieJarFetch, freePort, PASSWORD, startServer, uniqueName } from './support.js';

/** @type {Awaited<ReturnType<typeof startServer>>} */
let server;
before(async () => {
  server = await startServer();
});
after(async () => {
  await server?.stop();
});

/** A cookie-transport client with its own jar (a browser profile of its own). */
function cookieClient(extra = {}) {
  const jar = cookieJarFetch();
  const client = createClient({ baseUrl: server.url, transport: 'cookie', fetch: jar.fetch, ...extra });
  return { client, ...jar };
}

/** A bearer-transport client; its fetch still has a jar, to prove nothing lands in it. */
function bearerClient(extra = {}) {
  const jar = cookieJarFetch();
  const client = createClient({ baseUrl: server.url, transport: 'bearer', fetch: jar.fetch, ...extra });
  return { client, ...jar };
}

async function signedUp(make = cookieClient, extra = {}) {
  const made = make(extra);
  const username = uniqueName();
  const user = await made.client.signup({ username, password: PASSWORD });
  return { ...made, username, user };
}

describe('cookie transport', () => {
  test('login stores the session and later calls are authenticated', async () => {
    const { client: first, username } = await signedUp();
    await first.logout();
    const { client, jar, requests } = cookieClient();
    assert.equal(await client.me(), null, 'nobody is signed in yet');
    const user = await client.login({ username, password: PASSWORD });
    assert.equal(user.username, username);
    const stored = jar.get(`127.0.0.1:${server.port}`);
    assert.ok(stored?.get('vestibule_session')?.startsWith('vst_'), 'the session cookie is in the jar');
    // The login rate limit's device cookie (not a credential) rides along.
    assert.deepEqual([...(stored?.keys() ?? [])].sort(), ['vestibule_device', 'vestibule_session']);
    assert.deepEqual(await client.me(), user);
    const sessions = await client.sessions.list();
    assert.equal(sessions.length, 1);
    assert.equal(sessions[0].current, true);
    for (const r of requests) assert.equal(r.credentials, 'include', `${r.method} ${r.url} includes credentials`);
  });

  test('a write that creates an anonymous session is followed by writes with its token, never a refusal', async () => {
    const { client, requests } = cookieClient();
    assert.equal(await client.me(), null);
    for (let i = 1; i <= 3; i += 1) {
      assert.deepEqual(await client.request('/demo/counter', { method: 'POST' }), { counter: i });
    }
    const writes = requests.filter((r) => r.method === 'POST');
    assert.deepEqual(writes.map((r) => r.status), [200, 200, 200], 'no 403 and no retry');
    // The first write had no session to protect; the later ones carry the new session's token.
    assert.equal(writes[0].headers.get('x-csrf-token'), null);
    assert.ok(writes[1].headers.get('x-csrf-token'));
    assert.ok(writes[2].headers.get('x-csrf-token'));
    assert.doesNotMatch(server.logs(), /csrf\.refused/);
  });

  test('unsafe requests carry the CSRF token from the last answer; safe ones do not', async () => {
    const { client, requests } = await signedUp();
    requests.length = 0;
    await client.me();
    await client.tokens.create({ name: 'ci' });
    const [get, post] = requests;
    assert.equal(get.method, 'GET');
    assert.equal(get.headers.get('x-csrf-token'), null);
    assert.equal(post.method, 'POST');
    assert.match(post.headers.get('x-csrf-token') || '', /^[A-Za-z0-9_-]{40,}$/);
    assert.equal(post.status, 201);
  });

  test('a stale CSRF token is refreshed once and the request retried', async () => {
    const { client, fetch, requests, username } = await signedUp();
    // Another tab of the same browser logs in again: the session id and CSRF token rotate,
    // so the token this client holds no longer matches.
    const other = createClient({ baseUrl: server.url, fetch });
    await other.login({ username, password: PASSWORD });
    requests.length = 0;
    const created = await client.tokens.create({ name: 'after-rotation' });
    assert.equal(created.name, 'after-rotation');
    assert.deepEqual(
      requests.map((r) => `${r.method} ${new URL(r.url).pathname} ${r.status}`),
      ['POST /auth/tokens 403', 'GET /auth/csrf 200', 'POST /auth/tokens 201'],
    );
  });

  test('a CSRF refusal that persists is thrown after one retry, never looped on', async () => {
    const jar = cookieJarFetch();
    // A broken proxy that mangles the header on the way: every unsafe request fails CSRF.
    const mangling = (input, init = {}) => {
      const headers = new Headers(init.headers);
      if (headers.has('x-csrf-token')) headers.set('x-csrf-token', 'A'.repeat(86));
      return jar.fetch(input, { ...init, headers });
    };
    const client = createClient({ baseUrl: server.url, fetch: mangling });
    await client.signup({ username: uniqueName(), password: PASSWORD });
    jar.requests.length = 0;
    const err = await client.tokens.create({ name: 'never' }).then(
      () => assert.fail('must be refused'),
      (e) => e,
    );
    assert.ok(err instanceof VestibuleError);
    assert.equal(err.status, 403);
    assert.equal(err.code, 'csrf_token_mismatch');
    assert.deepEqual(
      jar.requests.map((r) => `${r.method} ${new URL(r.url).pathname}`),
      ['POST /auth/tokens', 'GET /auth/csrf', 'POST /auth/tokens'],
    );
  });

  test('a client that does not know the token yet (a reload) asks for it before writing', async () => {
    const { fetch, requests } = await signedUp();
    const reloaded = createClient({ baseUrl: server.url, fetch });
    requests.length = 0;
    await reloaded.tokens.create({ name: 'after-reload' });
    assert.deepEqual(
      requests.map((r) => `${r.method} ${new URL(r.url).pathname} ${r.status}`),
      ['GET /auth/csrf 200', 'POST /auth/tokens 201'],
    );
  });

  test('reauth proves the password again with the CSRF token; a wrong one is refused', async () => {
    const { client, requests } = await signedUp();
    requests.length = 0;
    const proof = /** @type {{ auth_time: number, reauth_until: number }} */ (await client.reauth({ password: PASSWORD }));
    assert.ok(proof.reauth_until > proof.auth_time, JSON.stringify(proof));
    assert.match(requests[0].headers.get('x-csrf-token') || '', /^[A-Za-z0-9_-]{40,}$/, 'the write carried the CSRF token');
    await assert.rejects(client.reauth({ password: 'not the password at all' }), (e) => {
      assert.ok(e instanceof VestibuleError);
      assert.equal(e.status, 401);
      assert.equal(e.code, 'invalid_credentials');
      return true;
    });
    assert.ok(await client.me(), 'a failed reauth does not end the session');
  });

  test('logout ends the session server-side', async () => {
    const { client, fetch } = await signedUp();
    await client.logout();
    assert.equal(await client.me(), null);
    const raw = await fetch(`${server.url}/auth/me`, { credentials: 'include' });
    assert.equal(raw.status, 401);
    await client.logout(); // idempotent
  });

  test('changePassword rotates this session and ends the others', async () => {
    const { client, requests, username } = await signedUp();
    const { fetch: otherFetch } = cookieJarFetch();
    const other = createClient({ baseUrl: server.url, fetch: otherFetch });
    await other.login({ username, password: PASSWORD });
    const { user, ended } = await client.changePassword({ currentPassword: PASSWORD, newPassword: 'a new long password' });
    assert.equal(user.username, username);
    assert.deepEqual(ended, { sessions: 1, access_tokens: 0 }, 'the answer says what ended');
    assert.equal(await other.me(), null, 'the other session ended');
    // The rotated CSRF token came with the answer: the next write needs no refresh.
    requests.length = 0;
    await client.tokens.create({ name: 'after-password' });
    assert.deepEqual(requests.map((r) => `${r.method} ${r.status}`), ['POST 201']);
  });

  test('sessions.revoke and logoutAll', async () => {
    const { client, username } = await signedUp();
    const { fetch: otherFetch } = cookieJarFetch();
    const other = createClient({ baseUrl: server.url, fetch: otherFetch });
    await other.login({ username, password: PASSWORD });
    const sessions = await client.sessions.list();
    assert.equal(sessions.length, 2);
    const notMine = sessions.find((s) => !s.current);
    assert.ok(notMine);
    await client.sessions.revoke(notMine.id);
    assert.equal(await other.me(), null);
    await other.login({ username, password: PASSWORD });
    await client.sessions.logoutAll();
    assert.equal(await client.me(), null);
    assert.equal(await other.me(), null);
  });
});

describe('bearer transport', () => {
  test('the token travels in Authorization, never a cookie', async () => {
    const { client, jar, requests, username } = await signedUp(bearerClient);
    assert.match(client.getToken() || '', /^vst_/);
    assert.equal((await client.me())?.username, username);
    await client.tokens.create({ name: 'from-bearer' });
    assert.equal(jar.size === 0 || [...jar.values()].every((m) => m.size === 0), true, 'no cookie stored');
    for (const r of requests) {
      assert.equal(r.credentials, 'omit');
      assert.equal(r.headers.get('cookie'), null);
      assert.equal(r.headers.get('x-csrf-token'), null, 'bearer needs no CSRF token');
    }
    const authed = requests.filter((r) => !r.url.endsWith('/auth/signup'));
    for (const r of authed) assert.equal(r.headers.get('authorization'), `Bearer ${client.getToken()}`);
  });

  test('logout revokes the token server-side and forgets it', async () => {
    const { client } = await signedUp(bearerClient);
    const token = client.getToken();
    await client.logout();
    assert.equal(client.getToken(), null);
    const res = await fetch(`${server.url}/auth/me`, { headers: { Authorization: `Bearer ${token}` } });
    assert.equal(res.status, 401);
    assert.equal((await res.json()).code, 'invalid_token');
  });

  test('a login while a dead token is held starts a new session', async () => {
    const { client, username } = await signedUp(bearerClient);
    const { client: other } = bearerClient();
    await other.login({ username, password: PASSWORD });
    await other.sessions.logoutAll();
    const dead = client.getToken();
    const user = await client.login({ username, password: PASSWORD });
    assert.equal(user.username, username);
    assert.notEqual(client.getToken(), dead);
    assert.equal((await client.me())?.username, username);
  });

  test('changePassword keeps the rotated token', async () => {
    const { client, username } = await signedUp(bearerClient);
    const old = client.getToken();
    await client.changePassword({ currentPassword: PASSWORD, newPassword: 'another long password' });
    assert.notEqual(client.getToken(), old);
    assert.equal((await client.me())?.username, username);
  });

  test('the opt-in sessionStorage adapter keeps the token across clients', async () => {
    const backing = new Map();
    const fake = /** @type {Storage} */ (/** @type {unknown} */ ({
      getItem: (k) => (backing.has(k) ? backing.get(k) : null),
      setItem: (k, v) => backing.set(k, v),
      removeItem: (k) => backing.delete(k),
    }));
    const storage = sessionStorageAdapter('vt', fake);
    const { username } = await signedUp(bearerClient, { storage });
    assert.match(backing.get('vt'), /^vst_/);
    const reloaded = createClient({ baseUrl: server.url, transport: 'bearer', storage: sessionStorageAdapter('vt', fake) });
    assert.equal((await reloaded.me())?.username, username);
    await reloaded.logout();
    assert.equal(backing.has('vt'), false);
  });
});

describe('401 hook and errors', () => {
  test('onUnauthenticated fires on a 401 with the error, not for a wrong password or me()', async () => {
    /** @type {VestibuleError[]} */
    const seen = [];
    const { client } = cookieClient({ onUnauthenticated: (e) => seen.push(e) });
    assert.equal(await client.me(), null);
    const wrong = await client.login({ username: uniqueName(), password: 'wrong password' }).catch((e) => e);
    assert.equal(wrong.code, 'invalid_credentials');
    assert.equal(wrong.status, 401);
    assert.equal(seen.length, 0, 'login failures and me() do not route to the login page');
    const err = await client.sessions.list().catch((e) => e);
    assert.ok(err instanceof VestibuleError);
    assert.equal(err.code, 'not_authenticated');
    assert.deepEqual(seen, [err]);
  });

  test('onSessionChange follows signup, me, logout, login and a 401 until unsubscribed', async () => {
    const { client } = cookieClient();
    /** @type {(string | null)[]} */
    const seen = [];
    const stop = client.onSessionChange((user) => seen.push(user ? user.username : null));
    const username = uniqueName();
    await client.signup({ username, password: PASSWORD });
    await client.me();
    await client.logout();
    await client.login({ username, password: PASSWORD });
    // The session ends elsewhere (logout-all from another client of the same browser jar is
    // not possible here: revoke it server-side through a second login's logout-all).
    const { client: other } = bearerClient();
    await other.login({ username, password: PASSWORD });
    await other.sessions.logoutAll();
    const err = await client.sessions.list().catch((e) => e);
    assert.equal(err.status, 401);
    assert.deepEqual(seen, [username, username, null, username, null]);
    stop();
    await client.me();
    assert.equal(seen.length, 5, 'no call after unsubscribing');
  });

  test('onSessionChange answers a bearer client that holds no token yet', async () => {
    const { client } = bearerClient();
    /** @type {(string | null)[]} */
    const seen = [];
    client.onSessionChange((user) => seen.push(user ? user.username : null));
    assert.equal(await client.me(), null);
    assert.deepEqual(seen, [null], 'a hook waiting for the first answer gets one');
  });

  test('a revoked bearer token fires the hook and is dropped', async () => {
    const seen = [];
    const { client } = await signedUp(bearerClient, { onUnauthenticated: (e) => seen.push(e.code) });
    const { client: other } = bearerClient();
    // Another client of the same user ends every session.
    const username = (await client.me())?.username || '';
    await other.login({ username, password: PASSWORD });
    await other.sessions.logoutAll();
    const err = await client.tokens.list().catch((e) => e);
    assert.equal(err.status, 401);
    assert.equal(err.code, 'invalid_token');
    assert.deepEqual(seen, ['invalid_token']);
    assert.equal(client.getToken(), null);
  });

  test('a throwing hook does not hide the error', async () => {
    const { client } = cookieClient({
      onUnauthenticated: () => {
        throw new Error('broken hook');
      },
    });
    const reported = [];
    const saved = globalThis.reportError;
    globalThis.reportError = (e) => reported.push(e);
    try {
      const err = await client.tokens.list().catch((e) => e);
      assert.equal(err.code, 'not_authenticated');
    } finally {
      globalThis.reportError = saved;
    }
    assert.deepEqual(reported.map((e) => e.message), ['broken hook']);
  });

  test('server errors have status, code, message and hint', async () => {
    const { client } = cookieClient();
    const err = await client.signup({ username: uniqueName(), password: 'short' }).catch((e) => e);
    assert.ok(err instanceof VestibuleError);
    assert.ok(err instanceof Error);
    assert.equal(err.name, 'VestibuleError');
    assert.equal(err.status, 422);
    assert.equal(err.code, 'password_too_short');
    assert.equal(typeof err.message, 'string');
    assert.ok(err.message.length > 0);
    assert.equal(typeof err.hint, 'string');
  });

  test('a non-JSON error answer becomes http_error', async () => {
    const client = createClient({
      baseUrl: 'http://api.invalid',
      fetch: async () => new Response('<h1>Bad Gateway</h1>', { status: 502, statusText: 'Bad Gateway', headers: { 'content-type': 'text/html' } }),
    });
    const err = await client.request('/api/x').catch((e) => e);
    assert.equal(err.code, 'http_error');
    assert.equal(err.status, 502);
    assert.equal(err.message, 'HTTP 502 Bad Gateway');
    assert.match(err.hint, /proxy/);
  });

  test('no server at baseUrl is a network_error with status 0', async () => {
    const port = await freePort();
    const client = createClient({ baseUrl: `http://127.0.0.1:${port}` });
    const err = await client.me().catch((e) => e);
    assert.ok(err instanceof VestibuleError);
    assert.equal(err.status, 0);
    assert.equal(err.code, 'network_error');
    assert.match(err.hint, new RegExp(`127.0.0.1:${port}`));
  });

  test('an aborted call rejects with the AbortError itself', async () => {
    const client = createClient({ baseUrl: server.url });
    const err = await client.fetch('/healthz', { signal: AbortSignal.abort() }).catch((e) => e);
    assert.equal(err.name, 'AbortError');
    const viaRequest = await client.request('/healthz', { signal: AbortSignal.abort() }).catch((e) => e);
    assert.equal(viaRequest.name, 'AbortError');
    assert.deepEqual(await client.request('/healthz', { signal: AbortSignal.timeout(5000) }), { status: 'ok' });
  });
});

describe('access tokens', () => {
  test('create, use, list and revoke', async () => {
    const { client } = await signedUp();
    const created = await client.tokens.create({ name: 'script', scopes: ['read'], expiresInDays: 3 });
    assert.match(created.token, /^vpat_/);
    assert.deepEqual(created.scopes, ['read']);
    const use = () => fetch(`${server.url}/auth/me`, { headers: { Authorization: `Bearer ${created.token}` } });
    assert.equal((await use()).status, 200);
    const list = await client.tokens.list();
    assert.deepEqual(list.map((t) => t.name), ['script']);
    assert.equal('token' in list[0], false, 'the secret is never listed');
    await client.tokens.revoke(created.id);
    assert.deepEqual(await client.tokens.list(), []);
    assert.equal((await use()).status, 401);
    const gone = await client.tokens.revoke(created.id).catch((e) => e);
    assert.equal(gone.code, 'token_not_found');
  });
});

describe('client.fetch for the app\'s own API', () => {
  test('applies the transport rules and the 401 hook', async () => {
    const seen = [];
    const { client, requests } = await signedUp(cookieClient, { onUnauthenticated: (e) => seen.push(e.code) });
    requests.length = 0;
    const res = await client.fetch('/demo/counter', { method: 'POST' });
    assert.equal(res.status, 200);
    assert.deepEqual(await res.json(), { counter: 1 });
    assert.equal(requests[0].credentials, 'include');
    assert.ok(requests[0].headers.get('x-csrf-token'));
    await client.logout();
    const res401 = await client.fetch('/auth/sessions');
    assert.equal(res401.status, 401, 'resolves like fetch');
    assert.deepEqual(seen, ['not_authenticated']);
  });

  test('retries a Request object once on a stale CSRF token, body included', async () => {
    const { client, fetch, requests, username } = await signedUp();
    await createClient({ baseUrl: server.url, fetch }).login({ username, password: PASSWORD });
    requests.length = 0;
    const req = new Request(`${server.url}/auth/tokens`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ name: 'via-request' }),
    });
    const res = await client.fetch(req);
    assert.equal(res.status, 201);
    assert.equal((await res.json()).name, 'via-request');
    assert.deepEqual(requests.map((r) => r.status), [403, 200, 201]);
  });

  test('never sends the bearer token or CSRF token to another origin', async () => {
    /** @type {import('node:http').IncomingHttpHeaders[]} */
    const seen = [];
    const other = createServer((req, res) => {
      seen.push(req.headers);
      res.end('ok');
    });
    const port = await freePort();
    await new Promise((r) => other.listen(port, '127.0.0.1', () => r(undefined)));
    try {
      const { client } = await signedUp(bearerClient);
      const { client: cookie, requests } = await signedUp();
      await client.fetch(`http://127.0.0.1:${port}/collect`, { method: 'POST', body: 'x' });
      await cookie.fetch(`http://127.0.0.1:${port}/collect`, { method: 'POST', body: 'x' });
      assert.equal(seen.length, 2);
      for (const h of seen) {
        assert.equal(h.authorization, undefined);
        assert.equal(h['x-csrf-token'], undefined);
      }
      assert.notEqual(requests.at(-1)?.credentials, 'include');
    } finally {
      other.close();
    }
  });
});

describe('oidc', () => {
  test('providers() lists none on a server without [[oidc.provider]]; loginUrl() names the start route', async () => {
    const { client } = cookieClient();
    assert.deepEqual(await client.oidc.providers(), []);
    assert.equal(
      client.oidc.loginUrl('test idp', { returnTo: 'http://localhost:5173/after?x=1' }),
      `${server.url}/auth/oidc/test%20idp/start?return_to=${encodeURIComponent('http://localhost:5173/after?x=1')}`,
    );
    assert.equal(client.oidc.loginUrl('test'), `${server.url}/auth/oidc/test/start`);
    assert.throws(() => client.oidc.login('test'), (e) => e instanceof VestibuleError && e.code === 'unsupported_environment');
  });
});
