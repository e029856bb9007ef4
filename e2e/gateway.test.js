// Scenario 6: the production gateway. The built React example served by
// `vestibule serve --static DIR`, `[[upstream]] /api` → notes-api (upstream mode, verifying the
// gateway's signed assertion against /auth/jwks.json). Cookie and bearer transports both reach
// the notes; an X-Vestibule-* header sent by the page (any spelling) never reaches notes-api.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { join } from 'node:path';

import {
  artifact,
  copyReactSpa,
  freePort,
  launch,
  PASSWORD,
  runVite,
  startNotesApi,
  startServer,
  tempDir,
  uniqueName,
} from './support.js';

let dir;
let notes;
let gateway;
let browser;

before(async () => {
  dir = tempDir('vestibule-e2e-gateway-');
  // scripts/test.sh builds the example once (REACT_SPA_DIST); run alone, the test builds a copy.
  let dist = process.env.REACT_SPA_DIST;
  if (!dist) {
    const app = join(dir, 'react-spa');
    copyReactSpa(app);
    runVite(app, ['build', '--logLevel', 'warn']);
    dist = join(app, 'dist');
  }
  const notesPort = await freePort();
  const notesUrl = `http://127.0.0.1:${notesPort}`;
  gateway = await startServer({
    toml: (port) =>
      `listen = "127.0.0.1:${port}"\npublic_url = "http://localhost:${port}"\n` +
      `static_dir = ${JSON.stringify(dist)}\n[auth]\nsignup = true\n` +
      `[[upstream]]\nprefix = "/api"\nurl = "${notesUrl}"\nname = "the notes API"\nidentity_assertion = true\n`,
  });
  // notes-api accepts a request only with a valid assertion from this gateway, for its own URL.
  notes = await startNotesApi({
    dir,
    listen: `127.0.0.1:${notesPort}`,
    args: ['--jwks-url', `${gateway.url}/auth/jwks.json`, '--audience', notesUrl, '--issuer', `http://localhost:${gateway.port}`],
  });
  browser = await launch();
});

after(async () => {
  await browser?.close();
  await notes?.stop();
  await gateway?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

async function settled(page, state) {
  await page.waitForSelector(`main[aria-busy="false"][data-state="${state}"]`);
}

async function signUp(page, username) {
  await page.fill('#username', username);
  await page.fill('#password', PASSWORD);
  await page.click('#signup');
  await settled(page, 'signed-in');
  assert.equal(await page.textContent('#status'), `Signed up as ${username}`);
}

async function addNote(page, text) {
  await page.fill('#note-text', text);
  await page.click('#note-form button[type="submit"]');
  await settled(page, 'signed-in');
  assert.equal(await page.textContent('#status'), 'Note saved');
}

/** Headers a page might send to impersonate someone, in the spellings backends fold together. */
const SPOOF = (id) => ({
  'X-Vestibule-User-Id': String(id),
  'x-vestibule-username': 'mallory',
  'X-VESTIBULE-USER-ID': String(id),
  x_vestibule_user_id: String(id),
  X_Vestibule_Username: 'mallory',
  'X-Vestibule-Assertion': 'forged.forged.forged',
});

test('the built app from --static: notes through the gateway per user, cookie and bearer, spoofed identity headers ignored', async () => {
  const { page, consoleErrors } = browser;
  const origin = `http://localhost:${gateway.port}`;

  // A client-side route falls back to index.html.
  await page.goto(`${origin}/some/client/route`);
  await settled(page, 'anonymous');

  // Anonymous with forged identity headers: the gateway answers 401 itself.
  const anonymous = await page.evaluate(
    async (headers) => {
      const res = await fetch('/api/notes', { headers });
      return { status: res.status, body: await res.json() };
    },
    SPOOF(1),
  );
  assert.equal(anonymous.status, 401);
  assert.equal(anonymous.body.code, 'not_authenticated');

  // Alice, cookie transport.
  const alice = uniqueName('alice');
  await signUp(page, alice);
  await addNote(page, "alice's note");
  assert.deepEqual(await page.locator('#notes li').allTextContents(), ["alice's note"]);
  assert.equal(await page.textContent('#served-to'), alice);
  await page.screenshot({ path: artifact('react-spa-gateway-after-login.png'), fullPage: true });
  const aliceId = Number(/user (\d+)/.exec((await page.textContent('#me')) || '')?.[1]);
  assert.ok(aliceId > 0);

  // Mallory's headers from Alice's page: notes-api still sees Alice, and only the gateway's
  // own identity headers (and its assertion) reached it.
  const seen = await page.evaluate(async (headers) => (await fetch('/api/whoami', { headers })).json(), SPOOF(aliceId + 1000));
  assert.deepEqual(seen.user, { id: aliceId, username: alice });
  assert.deepEqual(seen.vestibule_headers, ['x-vestibule-assertion', 'x-vestibule-user-id', 'x-vestibule-username']);

  await page.click('#logout');
  await settled(page, 'anonymous');

  // Bob, bearer transport: his own notes only, none of Alice's.
  await page.click('#transport-bearer');
  await settled(page, 'anonymous');
  const bob = uniqueName('bob');
  await signUp(page, bob);
  await addNote(page, "bob's note");
  assert.deepEqual(await page.locator('#notes li').allTextContents(), ["bob's note"]);
  assert.equal(await page.textContent('#served-to'), bob);
  const bobCookies = (await browser.context.cookies(origin)).filter((c) => c.name === 'vestibule_session');
  assert.deepEqual(bobCookies, [], 'the bearer transport holds no session cookie');

  // Bearer token in memory only: a reload forgets it.
  await page.reload();
  await settled(page, 'anonymous');
  await page.click('#transport-cookie');
  await settled(page, 'anonymous');
  assert.deepEqual(consoleErrors, []);
});
