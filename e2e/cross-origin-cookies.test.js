// Scenario 2: SPA at http://localhost:<spa>, API at http://localhost:<api> (same-site,
// cross-origin). With credentials: 'include' (the client) the session works; a plain fetch
// without it silently loses the cookie (browser-cookie-rules.md rule 1), which the API's
// /auth/_debug shows; an origin outside spa_origins is refused.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';

import { apiToml, freePort, launch, openSpa, PASSWORD, startPageServer, startServer, uniqueName } from './support.js';

let spa;
let stranger;
let api;
let apiUrl;
before(async () => {
  spa = await startPageServer();
  stranger = await startPageServer();
  api = await startServer({ toml: apiToml({ spa: [`http://localhost:${spa.port}`] }) });
  apiUrl = `http://localhost:${api.port}`;
});
after(async () => {
  await api?.stop();
  await spa?.stop();
  await stranger?.stop();
});

/** A fresh browser profile for one test. */
async function withBrowser(fn) {
  const b = await launch();
  try {
    return await fn(b);
  } finally {
    await b.close();
  }
}

test('login through the client stores the session and later calls are authenticated', async () => {
  await withBrowser(async ({ page, context }) => {
    await openSpa(page, `http://localhost:${spa.port}/`);
    const username = uniqueName('spa');
    const result = await page.evaluate(
      async ({ apiUrl, username, password }) => {
        const client = window.vestibule.createClient({ baseUrl: apiUrl, transport: 'cookie' });
        const before = await client.me();
        const signedUp = await client.signup({ username, password });
        const me = await client.me();
        const token = await client.tokens.create({ name: 'from-the-spa' });
        const sessions = await client.sessions.list();
        const debug = await (await client.fetch('/auth/_debug')).json();
        return { before, signedUp, me, tokenName: token.name, sessions: sessions.length, debug };
      },
      { apiUrl, username, password: PASSWORD },
    );
    assert.equal(result.before, null);
    assert.equal(result.signedUp.username, username);
    assert.equal(result.me?.username, username);
    assert.equal(result.tokenName, 'from-the-spa');
    assert.equal(result.sessions, 1);
    // What the server saw on a later call: the cookie arrived, from a trusted same-site origin.
    assert.equal(result.debug.request.origin, `http://localhost:${spa.port}`);
    assert.equal(result.debug.request.session_cookie_received, true);
    assert.equal(result.debug.verdict.relation, 'same-site');
    assert.equal(result.debug.verdict.cors_allowed, true);
    assert.deepEqual(result.debug.verdict.notes, []);
    // Host-only, HttpOnly, Lax, for the API's host (ports do not matter for cookies).
    const cookies = await context.cookies(apiUrl);
    assert.deepEqual(
      cookies
        .map((c) => ({ name: c.name, domain: c.domain, httpOnly: c.httpOnly, sameSite: c.sameSite }))
        .sort((a, b) => a.name.localeCompare(b.name)),
      // …beside the login rate limit's device cookie, with the same attributes.
      [
        { name: 'vestibule_device', domain: 'localhost', httpOnly: true, sameSite: 'Lax' },
        { name: 'vestibule_session', domain: 'localhost', httpOnly: true, sameSite: 'Lax' },
      ],
    );
  });
});

test("the same page without credentials: 'include' silently loses the session", async () => {
  const username = uniqueName('plain');
  // The user exists; this page only logs in.
  await withBrowser(async ({ page }) => {
    await openSpa(page, `http://localhost:${spa.port}/`);
    await page.evaluate(
      ({ apiUrl, username, password }) =>
        window.vestibule.createClient({ baseUrl: apiUrl }).signup({ username, password }),
      { apiUrl, username, password: PASSWORD },
    );
  });
  await withBrowser(async ({ page, context }) => {
    await openSpa(page, `http://localhost:${spa.port}/`);
    const seen = await page.evaluate(
      async ({ apiUrl, username, password }) => {
        // The classic mistake: fetch's default credentials mode is 'same-origin'.
        const login = await fetch(`${apiUrl}/auth/login`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ username, password }),
        });
        const loginBody = await login.json();
        const me = await fetch(`${apiUrl}/auth/me`);
        const debugPlain = await (await fetch(`${apiUrl}/auth/_debug`)).json();
        // Even with credentials now: the cookie was never stored.
        const meIncluded = await fetch(`${apiUrl}/auth/me`, { credentials: 'include' });
        const debugIncluded = await (await fetch(`${apiUrl}/auth/_debug`, { credentials: 'include' })).json();
        return {
          loginStatus: login.status,
          loginUser: loginBody.user?.username,
          meStatus: me.status,
          meIncludedStatus: meIncluded.status,
          debugPlain,
          debugIncluded,
        };
      },
      { apiUrl, username, password: PASSWORD },
    );
    // The login "worked": readable 200 with the user. Nothing tells the page otherwise.
    assert.equal(seen.loginStatus, 200);
    assert.equal(seen.loginUser, username);
    assert.equal(seen.meStatus, 401);
    assert.equal(seen.meIncludedStatus, 401);
    for (const debug of [seen.debugPlain, seen.debugIncluded]) {
      assert.equal(debug.request.origin, `http://localhost:${spa.port}`);
      assert.equal(debug.request.session_cookie_received, false);
      assert.deepEqual(debug.request.cookie_names, []);
      assert.equal(debug.verdict.cors_allowed, true);
      assert.match(debug.verdict.cookie, /credentials: 'include'/);
      assert.ok(
        debug.verdict.notes.some((n) => n.includes("credentials: 'include'")),
        JSON.stringify(debug.verdict.notes),
      );
    }
    assert.deepEqual(await context.cookies(apiUrl), [], 'the browser stored no cookie');
  });
});

test('an origin outside spa_origins is refused, and the client names spa_origins', async () => {
  await withBrowser(async ({ page, context }) => {
    const strangerOrigin = `http://localhost:${stranger.port}`;
    await openSpa(page, `${strangerOrigin}/`);
    const username = uniqueName('stranger');
    const result = await page.evaluate(
      async ({ apiUrl, username, password }) => {
        const client = window.vestibule.createClient({ baseUrl: apiUrl });
        try {
          await client.signup({ username, password });
          return { ok: true };
        } catch (e) {
          return { ok: false, name: e.name, status: e.status, code: e.code, message: e.message, hint: e.hint };
        }
      },
      { apiUrl, username, password: PASSWORD },
    );
    assert.equal(result.ok, false);
    assert.equal(result.name, 'VestibuleError');
    assert.equal(result.status, 0);
    assert.equal(result.code, 'cors_error');
    assert.match(result.hint, /spa_origins/);
    assert.ok(result.hint.includes(strangerOrigin), result.hint);
    // The preflight was refused, so the signup never reached the handler: no such user.
    const login = await fetch(`${api.url}/auth/login`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ username, password: PASSWORD }),
    });
    assert.equal(login.status, 401);
    assert.deepEqual(await context.cookies(apiUrl), []);
  });
});

test('an API that is not running is a network_error, not a CORS error', async () => {
  const deadPort = await freePort();
  await withBrowser(async ({ page }) => {
    await openSpa(page, `http://localhost:${spa.port}/`);
    const err = await page.evaluate(async (deadUrl) => {
      const client = window.vestibule.createClient({ baseUrl: deadUrl });
      try {
        await client.me();
        return null;
      } catch (e) {
        return { status: e.status, code: e.code, hint: e.hint };
      }
    }, `http://localhost:${deadPort}`);
    assert.equal(err?.status, 0);
    assert.equal(err?.code, 'network_error');
    assert.match(err?.hint || '', new RegExp(`localhost:${deadPort}`));
  });
});

test('a page in spa_origins can import the client from the API itself', async () => {
  await withBrowser(async ({ page }) => {
    await openSpa(page, `http://localhost:${spa.port}/`);
    const result = await page.evaluate(async (apiUrl) => {
      // Module scripts are fetched with CORS: this works only for allowed origins.
      const served = await import(`${apiUrl}/_vestibule/client.js`);
      const client = served.createClient({ baseUrl: apiUrl });
      return { same: Object.keys(served).sort().join(), me: await client.me() };
    }, apiUrl);
    assert.equal(result.same, 'VestibuleError,createClient,memoryStorage,sessionStorageAdapter');
    assert.equal(result.me, null);
  });
});
