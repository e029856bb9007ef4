// The React example's email screens in Chromium: "Forgot password?", the `/reset?token=…` screen
// a recovery link opens, and the `/verify?token=…` screen. The built app is served by
// `vestibule serve --static DIR` in demo mode, whose `log` transport prints each message (read
// here from the server's standard output).
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';

import { artifact, copyReactSpa, launch, PASSWORD, runVite, startServer, tempDir, uniqueName } from './support.js';

let dir;
let server;

before(async () => {
  dir = tempDir('vestibule-e2e-react-email-');
  let dist = process.env.REACT_SPA_DIST;
  if (!dist) {
    const app = join(dir, 'react-spa');
    copyReactSpa(app);
    runVite(app, ['build', '--logLevel', 'warn']);
    dist = join(app, 'dist');
  }
  server = await startServer({
    toml: (port) =>
      `listen = "127.0.0.1:${port}"\npublic_url = "http://localhost:${port}"\n` +
      `static_dir = ${JSON.stringify(dist)}\n[auth]\nsignup = true\n`,
  });
});

after(async () => {
  await server?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

const origin = () => `http://localhost:${server.port}`;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** The last `{path}?token=` link the log transport printed to `to`. */
async function link(kind, to, path) {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const out = readFileSync(join(server.dir, 'server.out'), 'utf8');
    const found = out
      .split('---- email ')
      .filter((block) => block.startsWith(`${kind} to ${to} `))
      .map((block) => block.match(new RegExp(`(http://localhost:\\d+${path}\\?token=[A-Za-z0-9_]+)`))?.[1])
      .filter(Boolean);
    if (found.length > 0) return found[found.length - 1];
    if (Date.now() > deadline) throw new Error(`no ${path} link to ${to}:\n${out}`);
    await sleep(50);
  }
}

async function signUp(username) {
  const res = await fetch(`${origin()}/auth/signup`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ username, password: PASSWORD, email: `${username}@example.test` }),
  });
  assert.equal(res.status, 201);
}

async function settled(page, state) {
  await page.waitForSelector(`main[aria-busy="false"][data-state="${state}"]`);
}

async function statusIs(page, re) {
  await page.waitForFunction((source) => new RegExp(source).test(document.querySelector('#status')?.textContent ?? ''), re.source);
}

test('React example: forgot password, the reset screen, then the verify screen', async () => {
  const username = uniqueName('reactmail');
  const email = `${username}@example.test`;
  await signUp(username);
  const browser = await launch();
  const { page } = browser;
  try {
    await page.goto(`${origin()}/`);
    await settled(page, 'anonymous');
    await page.click('#forgot summary');
    await page.fill('#forgot-login', email);
    await page.click('#forgot-form button[type="submit"]');
    await page.waitForSelector('#forgot-status');
    assert.match(await page.textContent('#forgot-status'), /a link is on its way/);

    await page.goto(await link('password_reset', email, '/reset'));
    await settled(page, 'anonymous');
    await page.fill('#reset-password', 'a brand new passphrase');
    await page.screenshot({ path: artifact('react-reset.png') });
    await page.click('#reset-form button[type="submit"]');
    await statusIs(page, /Password set/);
    assert.equal(new URL(page.url()).pathname, '/', 'the token left the address bar');

    await page.fill('#username', username);
    await page.fill('#password', 'a brand new passphrase');
    await page.click('#login');
    await settled(page, 'signed-in');

    // The verify screen: the signup's link, opened in this (signed-in) browser.
    await page.goto(await link('verify_email', email, '/verify'));
    await settled(page, 'signed-in');
    let status;
    for (const deadline = Date.now() + 10_000; Date.now() < deadline; await sleep(100)) {
      status = await page.evaluate(async () => (await fetch('/auth/email', { credentials: 'same-origin' })).json());
      if (status.verified) break;
    }
    assert.deepEqual(status, { email, verified: true, pending_email: null });
    assert.equal(await page.isVisible('#verify-error'), false);
    assert.equal(new URL(page.url()).pathname, '/', 'the token left the address bar');
  } finally {
    await browser.close();
  }
});
