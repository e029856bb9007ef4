// "Forgot password?" on the demo page, end to end in Chromium: ask for a link (the demo's `log`
// transport prints the message in the server's terminal, read here from its standard output),
// open the link, set a new password, log in with it; the link then is dead.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

import { artifact, launch, PASSWORD, startServer, uniqueName } from './support.js';

let server;
before(async () => {
  server = await startServer();
});
after(async () => {
  await server?.stop();
});

const origin = () => `http://localhost:${server.port}`;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function settled(page) {
  await page.waitForSelector('main[aria-busy="false"]');
}

/** The first reset link the log transport printed. */
async function resetLink() {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const out = readFileSync(join(server.dir, 'server.out'), 'utf8');
    const m = out.match(/(http:\/\/localhost:\d+\/reset\?token=[A-Za-z0-9_]+)/);
    if (m) return m[1];
    if (Date.now() > deadline) throw new Error(`no reset link printed:\n${out}`);
    await sleep(50);
  }
}

test('forgot password: link by email, new password, log in, the link is dead', async () => {
  const username = uniqueName('forgot');
  const res = await fetch(`${origin()}/auth/signup`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ username, password: PASSWORD, email: `${username}@example.test` }),
  });
  assert.equal(res.status, 201);

  const own = await launch();
  const { page } = own;
  try {
    await page.goto(`${origin()}/`);
    await settled(page);
    await page.fill('#forgot-login', `${username}@example.test`);
    await page.click('#forgot-form button[type="submit"]');
    await settled(page);
    assert.match(await page.textContent('#status'), /a link is on its way/);

    const link = await resetLink();
    await page.goto(link);
    await settled(page);
    assert.equal(await page.isVisible('#reset-form'), true);
    await page.fill('#reset-password', 'a brand new passphrase');
    await page.screenshot({ path: artifact('email-reset.png') });
    await page.click('#reset-form button[type="submit"]');
    await settled(page);
    assert.match(await page.textContent('#status'), /Password set/);

    await page.fill('#login-username', `${username}@example.test`);
    await page.fill('#login-password', 'a brand new passphrase');
    await page.click('#login-form button[type="submit"]');
    await settled(page);
    assert.match(await page.textContent('#status'), new RegExp(`Logged in as ${username}`));

    // The same link a second time: refused, shown at the form.
    const again = await launch();
    try {
      await again.page.goto(link);
      await settled(again.page);
      await again.page.fill('#reset-password', 'yet another passphrase');
      await again.page.click('#reset-form button[type="submit"]');
      await settled(again.page);
      assert.match(await again.page.textContent('#forgot-error'), /reset_token_invalid/);
    } finally {
      await again.close();
    }
  } finally {
    await own.close();
  }
});

/** The `n`-th verification link the log transport printed to `to`. */
async function verifyLink(to, n) {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const out = readFileSync(join(server.dir, 'server.out'), 'utf8');
    const links = out
      .split('---- email ')
      .filter((block) => block.startsWith(`verify_email to ${to} `))
      .map((block) => block.match(/(http:\/\/localhost:\d+\/verify\?token=[A-Za-z0-9_]+)/)?.[1])
      .filter(Boolean);
    if (links.length >= n) return links[n - 1];
    if (Date.now() > deadline) throw new Error(`no verification link ${n} to ${to}:\n${out}`);
    await sleep(50);
  }
}

test('verify banner: shown while the address is unverified, resend sends a new link, gone once verified', async () => {
  const username = uniqueName('banner');
  const email = `${username}@example.test`;
  const res = await fetch(`${origin()}/auth/signup`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ username, password: PASSWORD, email }),
  });
  assert.equal(res.status, 201);
  await verifyLink(email, 1);

  const own = await launch();
  const { page } = own;
  try {
    await page.goto(`${origin()}/`);
    await settled(page);
    assert.equal(await page.isVisible('#verify-banner'), false, 'signed out: no banner');
    await page.fill('#login-username', username);
    await page.fill('#login-password', PASSWORD);
    await page.click('#login-form button[type="submit"]');
    await settled(page);
    assert.equal(await page.isVisible('#verify-banner'), true);
    assert.equal(await page.textContent('#verify-email'), email);
    await page.screenshot({ path: artifact('email-verify-banner.png') });

    await page.click('#verify-resend');
    await settled(page);
    assert.match(await page.textContent('#status'), new RegExp(`A new link is on its way to ${email}`));
    // The resend's link is the one that works (the first one died with it).
    const link = await verifyLink(email, 2);
    // Opened while signed in: the page verifies, then loads the account: no banner any more.
    await page.goto(link);
    await settled(page);
    assert.match(await page.textContent('#me'), new RegExp(username));
    assert.equal(await page.isVisible('#verify-banner'), false, 'verified: no banner');
    await page.goto(`${origin()}/`);
    await settled(page);
    assert.equal(await page.isVisible('#verify-banner'), false, 'still verified after a reload');
  } finally {
    await own.close();
  }
});
