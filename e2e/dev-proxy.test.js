// Scenario 1: development. A temporary copy of examples/react-spa under its Vite dev server,
// notes-api (upstream mode) for /api, and `vestibule dev` in front: the browser, at the proxy's
// origin only, signs up, logs in, calls the protected API, reloads (still signed in), logs out;
// then an edit to a source file reaches the open page through the proxied HMR WebSocket.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

import {
  answers,
  artifact,
  childEnv,
  copyReactSpa,
  freePort,
  launch,
  PASSWORD,
  startNotesApi,
  startProcess,
  tempDir,
  uniqueName,
} from './support.js';
import { BIN } from '../clients/js/test/support.js';

let dir;
let app;
let vite;
let notes;
let dev;
let devPort;
let browser;

before(async () => {
  dir = tempDir('vestibule-e2e-dev-');
  app = join(dir, 'react-spa');
  copyReactSpa(app);
  const vitePort = await freePort();
  vite = await startProcess({
    cmd: process.execPath,
    args: [join(app, 'node_modules', 'vite', 'bin', 'vite.js'), '--port', String(vitePort), '--strictPort'],
    cwd: app,
    dir,
    name: 'vite',
    env: childEnv({ NO_COLOR: '1' }),
    ready: () => answers(`http://127.0.0.1:${vitePort}/`),
    timeoutMs: 60_000,
  });
  notes = await startNotesApi({ dir });
  devPort = await freePort();
  dev = await startProcess({
    cmd: BIN,
    args: ['dev', '--listen', `127.0.0.1:${devPort}`, '--frontend', `http://127.0.0.1:${vitePort}`, '--api', `/api=${notes.url}`],
    cwd: dir,
    dir,
    name: 'vestibule-dev',
    ready: async () => (await fetch(`http://127.0.0.1:${devPort}/healthz`, { signal: AbortSignal.timeout(1000) })).ok,
  });
  browser = await launch();
});

after(async () => {
  await browser?.close();
  await dev?.stop();
  await notes?.stop();
  await vite?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

/** Waits until the app has settled (no action running) in `state`. */
async function settled(page, state) {
  await page.waitForSelector(`main[aria-busy="false"][data-state="${state}"]`);
}

async function submitCredentials(page, button, username) {
  await page.fill('#username', username);
  await page.fill('#password', PASSWORD);
  await page.click(button);
  await settled(page, 'signed-in');
}

test('behind vestibule dev: sign up, log in, protected API, reload, log out, then hot reload through the proxy', async () => {
  const { page, context, consoleErrors } = browser;
  const origin = `http://localhost:${devPort}`;
  /** @type {string[]} */
  const sockets = [];
  page.on('websocket', (ws) => sockets.push(ws.url()));
  await page.goto(`${origin}/`);
  await settled(page, 'anonymous');
  assert.equal(await page.textContent('#status'), 'Not signed in');

  const username = uniqueName('dev');
  await submitCredentials(page, '#signup', username);
  assert.equal(await page.textContent('#status'), `Signed up as ${username}`);
  await page.click('#logout');
  await settled(page, 'anonymous');
  await submitCredentials(page, '#login', username);
  assert.equal(await page.textContent('#status'), `Logged in as ${username}`);
  assert.equal(await page.textContent('#me strong'), username);

  // The protected API: notes-api answers for the user the proxy vouched for.
  await page.fill('#note-text', 'written in development');
  await page.click('#note-form button[type="submit"]');
  await settled(page, 'signed-in');
  assert.equal(await page.textContent('#status'), 'Note saved');
  assert.deepEqual(await page.locator('#notes li').allTextContents(), ['written in development']);
  assert.equal(await page.textContent('#served-to'), username);
  await page.screenshot({ path: artifact('react-spa-dev-after-login.png'), fullPage: true });

  // One origin: the session cookie is the dev proxy's, named per port, HttpOnly.
  const cookies = await context.cookies(origin);
  const session = cookies.find((c) => c.name === `vestibule_session_${devPort}`);
  assert.ok(session, `no vestibule_session_${devPort} in ${cookies.map((c) => c.name)}`);
  assert.equal(session.httpOnly, true);

  // Reload: still signed in (the cookie transport survives it), the notes come back.
  await page.reload();
  await settled(page, 'signed-in');
  assert.equal(await page.textContent('#me strong'), username);
  assert.deepEqual(await page.locator('#notes li').allTextContents(), ['written in development']);

  await page.click('#logout');
  await settled(page, 'anonymous');
  assert.equal(await page.textContent('#status'), 'Logged out');
  // Anonymous again: the proxy sends no identity, so notes-api refuses.
  assert.equal(await page.evaluate(async () => (await fetch('/api/notes')).status), 401);

  // Hot module reload through the proxy: edit the temporary copy, the open page changes in place.
  await page.evaluate(() => {
    /** @type {any} */ (window).__sameDocument = 'yes';
  });
  const source = join(app, 'src', 'App.tsx');
  const before = readFileSync(source, 'utf8');
  assert.ok(before.includes('>Vestibule notes<'));
  writeFileSync(source, before.replace('>Vestibule notes<', '>Vestibule notes (hot)<'));
  await page.waitForFunction(() => document.querySelector('#title')?.textContent === 'Vestibule notes (hot)');
  assert.equal(await page.evaluate(() => /** @type {any} */ (window).__sameDocument), 'yes', 'no navigation happened');
  // The update came over Vite's HMR WebSocket, opened at the proxy's origin (never Vite's port).
  assert.ok(sockets.length > 0 && sockets.every((u) => u.startsWith(`ws://localhost:${devPort}/`)), `${sockets}`);
  assert.deepEqual(consoleErrors, []);
});
