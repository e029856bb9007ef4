// Scenario: sign-in through an OpenID provider, in Chromium. The real `oidc-provider`
// (e2e/oidc/provider.mjs) on 127.0.0.1, Vestibule on localhost (its own cookie jar: the two
// hosts share no cookies), an upstream behind Vestibule's gateway with
// `forward_access_token = true`. The demo page's "Sign in with Test IdP" → the provider's login
// form → back, logged in; the upstream receives the provider's access token, refreshed after its
// short lifetime; a logout at the provider ends the session through the back channel; the
// browser never sees a provider token.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createServer } from 'node:http';
import { once } from 'node:events';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createInterface } from 'node:readline';

import { artifact, freePort, launch, startServer } from './support.js';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
/** Seconds a provider access token lives: short, so the test sees a refresh. */
const ACCESS_TOKEN_TTL = 4;

let idp;
let idpInfo;
let vestibule;
let upstream;
let browser;
/** The Authorization headers the upstream received, in order. */
const received = [];

/** Starts e2e/oidc/provider.mjs with `options`; resolves with its JSON line. */
async function startProvider(options) {
  const child = spawn(process.execPath, [join(root, 'e2e/oidc/provider.mjs'), JSON.stringify(options)], {
    cwd: root,
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const lines = createInterface({ input: child.stdout });
  const [line] = await once(lines, 'line');
  return { child, info: JSON.parse(line) };
}

before(async () => {
  // The upstream: records the Authorization header, answers without it.
  upstream = createServer((req, res) => {
    received.push(req.headers.authorization || '');
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ ok: true, path: req.url }));
  });
  upstream.listen(0, '127.0.0.1');
  await once(upstream, 'listening');
  const upstreamUrl = `http://127.0.0.1:${upstream.address().port}`;

  // The provider's port is fixed first (Vestibule's configuration names the issuer), Vestibule's
  // is known once it runs (the provider registers its callback): discovery waits for the first
  // login, so the provider may start second.
  const idpPort = await freePort();
  const issuer = `http://127.0.0.1:${idpPort}`;
  vestibule = await startServer({
    toml: (port) =>
      `listen = "127.0.0.1:${port}"\npublic_url = "http://localhost:${port}"\n` +
      `secret_key = "an-e2e-oidc-secret-key-of-32-chars-or-more"\n` +
      `[auth]\nsignup = true\n` +
      `[oidc]\nsignup = true\n` +
      `[[oidc.provider]]\nname = "test"\nlabel = "Test IdP"\nissuer = "${issuer}"\n` +
      `client_id = "vestibule"\nclient_secret = "vestibule-test-secret-0123456789abcdef"\n` +
      `[[upstream]]\nprefix = "/api"\nurl = "${upstreamUrl}"\nforward_access_token = true\n`,
  });
  const rp = `http://localhost:${vestibule.port}`;
  idp = await startProvider({
    port: idpPort,
    redirect_uris: [`${rp}/auth/oidc/test/callback`],
    backchannel_logout_uri: `http://127.0.0.1:${vestibule.port}/auth/oidc/test/backchannel-logout`,
    access_token_ttl: ACCESS_TOKEN_TTL,
  });
  idpInfo = idp.info;
  assert.equal(idpInfo.issuer, issuer);
  browser = await launch();
});

after(async () => {
  await browser?.close();
  idp?.child.kill('SIGTERM');
  await vestibule?.stop();
  upstream?.closeAllConnections();
  upstream?.close();
});

/** Whether the provider's userinfo endpoint accepts `authorization`. */
async function providerAccepts(authorization) {
  const res = await fetch(`${idpInfo.issuer}/me`, { headers: { authorization } });
  return res.status === 200;
}

/** A same-origin call from the page (the session cookie goes along). */
async function pageFetch(page, path) {
  return page.evaluate(async (p) => {
    const res = await fetch(p, { credentials: 'same-origin' });
    return { status: res.status, body: await res.text() };
  }, path);
}

test('demo page: sign in with the provider, token relay with refresh, back-channel logout, no token in the browser', async (t) => {
  const { page, context, consoleErrors } = browser;
  const rp = `http://localhost:${vestibule.port}`;
  /** Every response the browser got from Vestibule: headers and (text) bodies. */
  const seen = [];
  page.on('response', async (res) => {
    if (!res.url().startsWith(rp)) return;
    let body = '';
    try {
      body = await res.text();
    } catch {
      // redirects and aborted loads have no body
    }
    seen.push(`${res.url()}\n${JSON.stringify(await res.allHeaders())}\n${body}`);
  });
  try {
    await page.goto(`${rp}/`);
    const button = page.getByRole('button', { name: 'Sign in with Test IdP' });
    await button.click();
    // The provider's login form.
    await page.waitForURL((u) => u.toString().startsWith(idpInfo.issuer));
    await page.fill('input[name="login"]', 'judy');
    await page.click('button[type="submit"]');
    // Back on the demo page, logged in.
    await page.waitForURL((u) => u.toString().startsWith(rp));
    const me = await pageFetch(page, '/auth/me');
    assert.equal(me.status, 200, me.body);
    assert.equal(JSON.parse(me.body).user.username, 'judy');

    // The upstream gets the provider's access token; the page gets the upstream's answer only.
    const first = await pageFetch(page, '/api/first');
    assert.equal(first.status, 200, first.body);
    const token1 = received.at(-1);
    assert.match(token1, /^Bearer \S+$/);
    assert.ok(await providerAccepts(token1), 'the provider accepts the relayed token');

    // Past the refresh point (half the lifetime): the next call carries a new, valid token.
    await new Promise((r) => setTimeout(r, (ACCESS_TOKEN_TTL / 2 + 0.5) * 1000));
    const second = await pageFetch(page, '/api/second');
    assert.equal(second.status, 200, second.body);
    const token2 = received.at(-1);
    assert.notEqual(token2, token1, 'refreshed');
    assert.ok(await providerAccepts(token2), 'the provider accepts the refreshed token');

    // The browser never saw a provider token: not in Vestibule's responses, cookies or storage.
    const secrets = [token1, token2].map((t) => t.slice('Bearer '.length));
    const cookies = JSON.stringify(await context.cookies());
    const storage = await page.evaluate(() => JSON.stringify({ ...localStorage, ...sessionStorage }));
    for (const s of secrets) {
      assert.ok(!cookies.includes(s), 'no token in a cookie');
      assert.ok(!storage.includes(s), 'no token in web storage');
      assert.ok(!seen.some((r) => r.includes(s)), 'no token in a response');
    }

    // The user logs out at the provider: its back-channel call ends the Vestibule session.
    await page.goto(`${idpInfo.issuer}/session/end`);
    await page.getByRole('button', { name: /sign me out/i }).click();
    await page.waitForLoadState();
    await page.goto(`${rp}/`);
    let after = await pageFetch(page, '/auth/me');
    for (let i = 0; i < 50 && after.status !== 401; i += 1) {
      await new Promise((r) => setTimeout(r, 100));
      after = await pageFetch(page, '/auth/me');
    }
    assert.equal(after.status, 401, 'the session ended through the back channel');
    const relayed = received.length;
    const api = await pageFetch(page, '/api/after');
    assert.ok(
      received.slice(relayed).every((h) => !h.startsWith('Bearer ')),
      `no token relayed after the logout (${api.status})`,
    );
    assert.deepEqual(consoleErrors, []);
  } catch (e) {
    await page.screenshot({ path: artifact('oidc-failure.png') }).catch(() => {});
    t.diagnostic(vestibule.logs());
    throw e;
  }
});
