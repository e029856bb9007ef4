// The built-in demo page (which imports vestibule-client from /_vestibule/client.js) in Chromium:
// sign up, count, switch to bearer, log in, log out; errors shown at the form that failed; what
// each state offers; what a password change ended; the anonymous counter without a CSRF
// refusal; TOTP, recovery codes and passkeys. Screenshots go to target/e2e-artifacts.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';

import { artifact, launch, PASSWORD, startServer, uniqueName } from './support.js';

let server;
let browser;
before(async () => {
  // Audit events (`csrf.refused`, `signup`, …) are logged at info.
  server = await startServer({ env: { VESTIBULE_LOG: 'warn,vestibule::audit=info' } });
  browser = await launch();
});
after(async () => {
  await browser?.close();
  await server?.stop();
});

const origin = () => `http://localhost:${server.port}`;

/** Waits until every queued action of the demo page has finished. */
async function settled(page) {
  await page.waitForSelector('main[aria-busy="false"]');
}

/** The demo in a browser of its own (a fresh profile: no cookie of another test). */
async function openDemo() {
  const own = await launch();
  const { page } = own;
  await page.goto(`${origin()}/`);
  await settled(page);
  await page.waitForFunction(() => document.querySelector('#status')?.textContent?.startsWith('Ready'));
  return {
    page,
    async close() {
      const errors = [...own.consoleErrors];
      await own.close();
      assert.deepEqual(errors, [], 'no uncaught error or console error on the page');
    },
  };
}

async function signUp(page, username, password = PASSWORD) {
  await page.fill('#signup-username', username);
  await page.fill('#signup-password', password);
  await page.click('#signup-form button[type="submit"]');
  await settled(page);
}

async function logIn(page, username, password = PASSWORD) {
  await page.fill('#login-username', username);
  await page.fill('#login-password', password);
  await page.click('#login-form button[type="submit"]');
  await settled(page);
}

/** The id of the focused element. */
const focused = (page) => page.evaluate(() => document.activeElement?.id ?? '');

/** Whether `selector` is rendered (not hidden by itself or an ancestor). */
const visible = (page, selector) => page.isVisible(selector);

/** RFC 6238 TOTP (SHA-1, 6 digits, 30 s) of a base32 secret, `offset` steps from now. */
function totp(secret, offset = 0) {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
  let bits = '';
  for (const c of secret.replace(/=+$/, '').toUpperCase()) {
    const v = alphabet.indexOf(c);
    assert.ok(v >= 0, `base32 secret: ${secret}`);
    bits += v.toString(2).padStart(5, '0');
  }
  const key = Buffer.from(bits.match(/.{8}/g).map((b) => parseInt(b, 2)));
  const step = Buffer.alloc(8);
  step.writeBigUInt64BE(BigInt(Math.floor(Date.now() / 1000 / 30) + offset));
  const mac = createHmac('sha1', key).update(step).digest();
  const at = mac[mac.length - 1] & 0xf;
  const n = (mac.readUInt32BE(at) & 0x7fffffff) % 1_000_000;
  return String(n).padStart(6, '0');
}

test('the demo page signs up, counts and logs in with both transports through the client', async () => {
  const { page, consoleErrors } = browser;
  await page.goto(`${origin()}/`);
  await settled(page);
  await page.waitForFunction(() => document.querySelector('#status')?.textContent?.startsWith('Ready'));

  // Anonymous: the counter works with the cookie, and a click after the one that created the
  // session carries its CSRF token: the server refuses nothing.
  for (let i = 1; i <= 3; i += 1) {
    await page.click('#counter-inc');
    await settled(page);
    assert.equal(await page.textContent('#counter'), String(i));
  }
  assert.doesNotMatch(server.logs(), /csrf\.refused/, 'no click was refused and retried');

  const username = uniqueName('demo');
  await signUp(page, username);
  assert.equal(await page.textContent('#status'), `Signed up and signed in as ${username}`);
  assert.equal(await page.textContent('#me strong'), username);
  assert.equal(await page.locator('#sessions tbody tr.current').count(), 1);
  // The Browser column: the server's label, the raw User-Agent on hover.
  const agent = page.locator('#sessions tbody tr.current td.agent');
  const ua = await page.evaluate(() => navigator.userAgent);
  const major = /(?:Headless)?Chrome\/(\d+)/.exec(ua)?.[1];
  const family = ua.includes('HeadlessChrome/') ? 'Headless Chrome' : 'Chrome';
  assert.equal(await agent.getAttribute('title'), ua);
  assert.equal(await agent.textContent(), `this browser ${family} ${major} on Linux`);

  // The anonymous session's data was kept through the signup: 3, then 4 and 5.
  await page.click('#counter-inc');
  await settled(page);
  await page.click('#counter-inc');
  await settled(page);
  assert.equal(await page.textContent('#counter'), '5');
  await page.screenshot({ path: artifact('demo-after-login.png'), fullPage: true });
  const log = server.logs();
  assert.match(log, /signup/, 'the audit log is read at info level');
  assert.doesNotMatch(log, /csrf\.refused/);

  // The session cookie is HttpOnly: the page's script cannot see it.
  assert.equal(await page.evaluate(() => document.cookie), '');
  const cookies = await browser.context.cookies(origin());
  assert.deepEqual(
    cookies.map((c) => [c.name, c.httpOnly, c.sameSite]).sort(),
    [['vestibule_device', true, 'Lax'], ['vestibule_session', true, 'Lax']],
  );

  // Bearer transport: a second session of the same user, held by the page in memory.
  await page.click('label[for="transport-bearer"]');
  await settled(page);
  assert.equal(await page.textContent('#status'), 'Bearer token: not signed in');
  await logIn(page, username);
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
  assert.doesNotMatch(server.logs(), /csrf\.refused/);
  assert.deepEqual(consoleErrors, []);
});

test('the page shows what fits the state: forms signed out, account panels signed in', async () => {
  const { page, close } = await openDemo();
  try {
    const signedIn = ['#logout', '#logout-all', '#sessions', '#tokens', '#password-form', '#reauth-form', '#totp-enroll'];
    for (const s of ['#signup-form', '#login-form', '#passkey-login']) assert.ok(await visible(page, s), `${s} signed out`);
    for (const s of signedIn) assert.equal(await visible(page, s), false, `no ${s} signed out`);
    await signUp(page, uniqueName('state'));
    for (const s of ['#signup-form', '#login-form', '#passkey-login']) assert.equal(await visible(page, s), false, `no ${s} signed in`);
    for (const s of signedIn) assert.ok(await visible(page, s), `${s} signed in`);
    await page.click('#logout');
    await settled(page);
    assert.ok(await visible(page, '#login-form'));
    assert.equal(await visible(page, '#logout'), false);
  } finally {
    await close();
  }
});

test('a failed form shows its error at the form, focused and announced', async () => {
  const { page, close } = await openDemo();
  try {
    const username = uniqueName('errors');
    // Sign up with a common password, after scrolling down to the form.
    await page.locator('#signup-form').scrollIntoViewIfNeeded();
    await signUp(page, username, 'password123');
    assert.match(await page.textContent('#signup-error'), /password_too_common/);
    assert.equal(await page.getAttribute('#signup-error', 'role'), 'alert');
    assert.equal(await focused(page), 'signup-error');
    assert.equal(await page.textContent('#error'), '', 'not (only) in the box at the top');
    assert.equal(await page.textContent('#status'), 'Signing up: failed');

    await logIn(page, username, 'not the password');
    assert.match(await page.textContent('#login-error'), /invalid_credentials/);
    assert.equal(await focused(page), 'login-error');
    assert.equal(await page.textContent('#signup-error'), '', 'the last error went away');

    await signUp(page, username);
    assert.equal(await page.textContent('#me strong'), username);

    // A token that outlives the server's limit.
    await page.fill('#token-name', 'too long');
    await page.fill('#token-expires', '100000');
    await page.click('#token-form button[type="submit"]');
    await settled(page);
    assert.match(await page.textContent('#tokens-error'), /expires_in_days/);
    assert.equal(await focused(page), 'tokens-error');

    await page.fill('#current-password', 'not the password');
    await page.fill('#new-password', 'a brand new passphrase');
    await page.click('#password-form button[type="submit"]');
    await settled(page);
    assert.match(await page.textContent('#password-error'), /invalid_credentials/);
    assert.equal(await focused(page), 'password-error');
    await page.screenshot({ path: artifact('demo-form-error.png'), fullPage: true });
  } finally {
    await close();
  }
});

test('a password change says which other sessions and access tokens it ended', async () => {
  const { page, close } = await openDemo();
  try {
    const username = uniqueName('ended');
    await signUp(page, username);
    await page.fill('#token-name', 'backup script');
    await page.click('#token-form button[type="submit"]');
    await settled(page);
    assert.match(await page.textContent('#status'), /created/);
    // Two more sessions of the same user elsewhere.
    for (let i = 0; i < 2; i += 1) {
      const res = await fetch(`${server.url}/auth/login`, {
        method: 'POST',
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify({ username, password: PASSWORD, transport: 'bearer' }),
      });
      assert.equal(res.status, 200);
    }
    await page.fill('#current-password', PASSWORD);
    await page.fill('#new-password', 'a brand new passphrase');
    await page.click('#password-form button[type="submit"]');
    await settled(page);
    assert.equal(await page.textContent('#password-result'), 'Password changed: 2 other sessions and 1 access token were ended.');
    assert.equal(await page.textContent('#status'), 'Password changed: 2 other sessions and 1 access token were ended');
    assert.equal(await page.textContent('#tokens tbody'), 'No access tokens yet.');
    assert.equal(await page.locator('#sessions tbody tr').count(), 1);
  } finally {
    await close();
  }
});

test('TOTP: enrol from the QR secret, log in with the code, recovery codes shown once and usable', async () => {
  const { page, close } = await openDemo();
  try {
    const username = uniqueName('totp');
    await signUp(page, username);
    await page.click('#totp-enroll');
    await settled(page);
    assert.ok(await visible(page, '#totp-qr svg'), 'the QR code is shown');
    const secret = (await page.textContent('#totp-secret')) || '';
    assert.match(secret, /^[A-Z2-7]{16,}=*$/);
    await page.fill('#totp-code', totp(secret));
    await page.click('#totp-form button[type="submit"]');
    await settled(page);
    const codes = await page.locator('#recovery-codes li').allTextContents();
    assert.equal(codes.length, 10);
    assert.match(await page.textContent('#mfa-status'), /authenticator app on; 10 recovery codes left/);
    assert.equal(await visible(page, '#totp-enroll'), false, 'TOTP is on: no second enrolment');
    await page.screenshot({ path: artifact('demo-recovery-codes.png'), fullPage: true });
    // Shown once: the next action clears them.
    await page.click('#sessions-refresh');
    await settled(page);
    assert.equal(await page.locator('#recovery-codes li').count(), 0);

    // The password alone is not enough any more.
    await page.click('#logout');
    await settled(page);
    await logIn(page, username);
    assert.ok(await visible(page, '#mfa-form'));
    assert.equal(await visible(page, '#login-form'), false);
    assert.equal(await page.textContent('#me'), 'Not signed in');
    assert.equal(await focused(page), 'mfa-code');
    // The enrolment spent this time step's code: the next step's is accepted (±1 step).
    await page.fill('#mfa-code', totp(secret, 1));
    await page.click('#mfa-form button[type="submit"]');
    await settled(page);
    assert.equal(await page.textContent('#status'), `Logged in as ${username} with a second factor`);
    assert.equal(await page.textContent('#me strong'), username);

    // A recovery code logs in once.
    await page.click('#logout');
    await settled(page);
    await logIn(page, username);
    await page.fill('#mfa-code', codes[0]);
    await page.click('#mfa-form button[type="submit"]');
    await settled(page);
    assert.equal(await page.textContent('#me strong'), username);
    assert.match(await page.textContent('#mfa-status'), /9 recovery codes left/);
    await page.click('#logout');
    await settled(page);
    await logIn(page, username);
    await page.fill('#mfa-code', codes[0]);
    await page.click('#mfa-form button[type="submit"]');
    await settled(page);
    assert.match(await page.textContent('#login-error'), /mfa_code_invalid/);
    assert.equal(await focused(page), 'login-error');
    assert.equal(await page.textContent('#me'), 'Not signed in');
  } finally {
    await close();
  }
});

test('passkeys: register in the demo, log in without a password, and as the second factor', async () => {
  const { page, close } = await openDemo();
  try {
    const cdp = await page.context().newCDPSession(page);
    await cdp.send('WebAuthn.enable');
    await cdp.send('WebAuthn.addVirtualAuthenticator', {
      options: {
        protocol: 'ctap2',
        transport: 'internal',
        hasResidentKey: true,
        hasUserVerification: true,
        isUserVerified: true,
        automaticPresenceSimulation: true,
      },
    });
    const username = uniqueName('pk');
    await signUp(page, username);
    await page.click('#passkey-register');
    await settled(page);
    assert.equal(await page.textContent('#status'), 'Passkey added: it logs in without a password. Write down your recovery codes');
    assert.equal(await page.locator('#recovery-codes li').count(), 10, 'the first factor brings recovery codes');
    assert.match(await page.textContent('#mfa-status'), /1 passkey/);

    await page.click('#logout');
    await settled(page);
    await page.click('#passkey-login');
    await settled(page);
    assert.equal(await page.textContent('#status'), `Logged in as ${username} with a passkey`);
    assert.equal(await page.textContent('#me strong'), username);

    // With the password: the passkey is the second factor.
    await page.click('#logout');
    await settled(page);
    await logIn(page, username);
    assert.ok(await visible(page, '#mfa-passkey'), 'the passkey is offered as the second factor');
    await page.click('#mfa-passkey');
    await settled(page);
    assert.equal(await page.textContent('#status'), `Logged in as ${username} with a second factor`);
    assert.equal(await page.textContent('#me strong'), username);
    await page.screenshot({ path: artifact('demo-passkey.png'), fullPage: true });
  } finally {
    await close();
  }
});
