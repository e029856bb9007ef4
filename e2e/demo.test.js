// The built-in demo page (which imports vestibule-client from /_vestibule/client.js) in Chromium:
// sign up, count, switch to bearer, log in, log out. Screenshots go to target/e2e-artifacts.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';

import { artifact, launch, PASSWORD, startServer, uniqueName } from './support.js';

let server;
let browser;
before(async () => {
  server = await startServer();
  browser = await launch();
});
after(async () => {
  await browser?.close();
  await server?.stop();
});

/** Waits until every queued action of the demo page has finished. */
async function settled(page) {
  await page.waitForSelector('main[aria-busy="false"]');
}

test('the demo page signs up, counts and logs in with both transports through the client', async () => {
  const { page, consoleErrors } = browser;
  const origin = `http://localhost:${server.port}`;
  await page.goto(`${origin}/`);
  await settled(page);
  await page.waitForFunction(() => document.querySelector('#status')?.textContent?.startsWith('Ready'));

  const username = uniqueName('demo');
  await page.fill('#signup-username', username);
  await page.fill('#signup-password', PASSWORD);
  await page.click('#signup-form button[type="submit"]');
  await settled(page);
  assert.equal(await page.textContent('#status'), `Signed up and signed in as ${username}`);
  assert.equal(await page.textContent('#me strong'), username);
  assert.equal(await page.locator('#sessions tbody tr.current').count(), 1);

  await page.click('#counter-inc');
  await settled(page);
  await page.click('#counter-inc');
  await settled(page);
  assert.equal(await page.textContent('#counter'), '2');
  await page.screenshot({ path: artifact('demo-after-login.png'), fullPage: true });

  // The session cookie is HttpOnly: the page's script cannot see it.
  assert.equal(await page.evaluate(() => document.cookie), '');
  const cookies = await browser.context.cookies(origin);
  assert.deepEqual(
    cookies.map((c) => [c.name, c.httpOnly, c.sameSite]).sort(),
    [['vestibule_device', true, 'Lax'], ['vestibule_session', true, 'Lax']],
  );

  // Bearer transport: a second session of the same user, held by the page in memory.
  await page.click('label[for="transport-bearer"]');
  await settled(page);
  assert.equal(await page.textContent('#status'), 'Bearer token: not signed in');
  await page.fill('#login-username', username);
  await page.fill('#login-password', PASSWORD);
  await page.click('#login-form button[type="submit"]');
  await settled(page);
  assert.equal(await page.textContent('#status'), `Logged in as ${username}`);
  assert.match((await page.textContent('#transport-info')) || '', /vst_/);
  const kinds = await page.locator('#sessions tbody td.transport').allTextContents();
  assert.deepEqual(kinds.sort(), ['bearer', 'cookie']);
  await page.screenshot({ path: artifact('demo-bearer.png'), fullPage: true });

  await page.click('#logout');
  await settled(page);
  assert.equal(await page.textContent('#me'), 'Not signed in');

  // Back to the cookie: still signed in there.
  await page.click('label[for="transport-cookie"]');
  await settled(page);
  assert.equal(await page.textContent('#status'), `Cookie session: signed in as ${username}`);
  assert.deepEqual(consoleErrors, []);
});
