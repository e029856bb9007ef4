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
