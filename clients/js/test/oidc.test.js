// vestibule-client's provider identities against a real `vestibule serve` and a real, certified
// OpenID provider (`oidc-provider`, e2e/oidc/provider.mjs): oidc.link() from a signed-in session,
// identities.list() and identities.unlink().
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { existsSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

import { createClient, VestibuleError } from '../src/index.js';
import { cookieJarFetch, freePort, PASSWORD, startServer, uniqueName } from './support.js';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');
const haveProvider = existsSync(resolve(root, 'node_modules/oidc-provider/package.json'));

/** @type {Awaited<ReturnType<typeof startServer>>} */
let server;
/** @type {import('node:child_process').ChildProcess | undefined} */
let idp;
/** @type {{ issuer: string, client_id: string, client_secret: string }} */
let info;

before(async () => {
  if (!haveProvider) return;
  const port = await freePort();
  idp = spawn(
    process.execPath,
    ['e2e/oidc/provider.mjs', JSON.stringify({ redirect_uris: [`http://127.0.0.1:${port}/auth/oidc/test/callback`] })],
    { cwd: root, stdio: ['ignore', 'pipe', 'inherit'] },
  );
  const lines = createInterface({ input: /** @type {import('node:stream').Readable} */ (idp.stdout) });
  info = JSON.parse(await new Promise((ok) => lines.once('line', ok)));
  server = await startServer({
    port,
    toml: (p) =>
      `listen = "127.0.0.1:${p}"\npublic_url = "http://127.0.0.1:${p}"\n[auth]\nsignup = true\n` +
      `[oidc]\nsignup = true\n[[oidc.provider]]\nname = "test"\nlabel = "Test IdP"\n` +
      `issuer = "${info.issuer}"\nclient_id = "${info.client_id}"\nclient_secret = "${info.client_secret}"\n`,
  });
});
after(async () => {
  await server?.stop();
  idp?.kill('SIGTERM');
});

/** The provider's side of a login in a browser of its own: the callback URL it sends back. */
async function atProvider(url, username) {
  const { fetch: f } = cookieJarFetch();
  let next = url;
  for (let i = 0; i < 20; i += 1) {
    if (next.includes('/auth/oidc/') && next.includes('/callback')) return next;
    const res = await f(next, { redirect: 'manual' });
    if (res.status >= 300 && res.status < 400) {
      next = new URL(/** @type {string} */ (res.headers.get('location')), next).href;
      continue;
    }
    const html = await res.text();
    const action = /action="([^"]+)"/.exec(html)?.[1];
    assert.ok(action, `the provider's login form: ${html}`);
    const posted = await f(new URL(action, next).href, {
      method: 'POST',
      redirect: 'manual',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: `login=${encodeURIComponent(username)}`,
    });
    next = new URL(/** @type {string} */ (posted.headers.get('location')), next).href;
  }
  throw new Error('too many redirects');
}

describe('provider identities', { skip: !haveProvider && 'node_modules/oidc-provider is missing (npm ci at the root)' }, () => {
  test('link() from a signed-in session, list() shows the identity, unlink() removes it', async () => {
    const jar = cookieJarFetch();
    const client = createClient({ baseUrl: server.url, transport: 'cookie', fetch: jar.fetch });
    const username = uniqueName('linker');
    await client.signup({ username, password: PASSWORD });
    assert.deepEqual(await client.oidc.providers(), [{ name: 'test', label: 'Test IdP' }]);
    assert.deepEqual(await client.identities.list(), []);

    const url = await client.oidc.link('test', { returnTo: '/settings' });
    assert.ok(url.startsWith(`${info.issuer}/`), url);
    assert.match(url, /code_challenge_method=S256/);
    const sent = jar.requests.at(-1);
    assert.equal(sent?.method, 'POST');
    assert.ok(sent?.headers.get('x-csrf-token'), 'the CSRF header goes with the link');

    // The browser at the provider, then back at Vestibule's callback with the session cookie.
    const callback = await atProvider(url, `${username}-idp`);
    const back = await jar.fetch(callback, { redirect: 'manual' });
    assert.equal(back.status, 303);
    assert.equal(back.headers.get('location'), `${server.url}/settings?oidc_linked=test`);

    const me = await client.me();
    assert.equal(me?.username, username, 'still the same user');
    const ids = await client.identities.list();
    assert.equal(ids.length, 1);
    assert.equal(ids[0].provider, 'test');
    assert.equal(ids[0].subject, `${username}-idp`);
    assert.equal(ids[0].issuer, info.issuer);

    await client.identities.unlink(ids[0].id);
    assert.deepEqual(await client.identities.list(), []);
    await assert.rejects(
      client.identities.unlink(ids[0].id),
      (e) => e instanceof VestibuleError && e.status === 404 && e.code === 'not_found',
    );
  });

  test('link() refuses a foreign returnTo and an unknown provider with the server codes', async () => {
    const client = createClient({ baseUrl: server.url, transport: 'cookie', fetch: cookieJarFetch().fetch });
    await client.signup({ username: uniqueName('linker'), password: PASSWORD });
    await assert.rejects(
      client.oidc.link('test', { returnTo: 'https://attacker.example/' }),
      (e) => e instanceof VestibuleError && e.status === 400 && e.code === 'oidc_return_to_refused',
    );
    await assert.rejects(
      client.oidc.link('nope', { returnTo: '/' }),
      (e) => e instanceof VestibuleError && e.status === 404 && e.code === 'oidc_provider_unknown',
    );
  });
});
