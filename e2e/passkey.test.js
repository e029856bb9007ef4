// Passkeys in Chromium with a virtual authenticator (CDP WebAuthn domain: CTAP2, internal
// transport, resident keys, user verification): register a passkey on a logged-in page, then in
// a fresh browser holding only that credential log in without a password, and use it as the
// second factor of a password login.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';

import { launch, PASSWORD, startServer, uniqueName } from './support.js';

let server;
before(async () => {
  // public_url defaults to http://localhost:PORT: a domain name, so passkeys are on.
  server = await startServer();
});
after(async () => {
  await server?.stop();
});

/** A virtual platform authenticator on `page`: returns the CDP session and its id. */
async function virtualAuthenticator(browser, page) {
  const cdp = await browser.context.newCDPSession(page);
  await cdp.send('WebAuthn.enable');
  const { authenticatorId } = await cdp.send('WebAuthn.addVirtualAuthenticator', {
    options: {
      protocol: 'ctap2',
      transport: 'internal',
      hasResidentKey: true,
      hasUserVerification: true,
      isUserVerified: true,
      automaticPresenceSimulation: true,
    },
  });
  return { cdp, authenticatorId };
}

/** Opens a page of the API's origin (a secure context: localhost) with the client loaded. */
async function openApiPage(page, origin) {
  await page.goto(`${origin}/healthz`);
  await page.evaluate(async () => {
    window.vestibule = await import('/_vestibule/client.js');
  });
}

test('a passkey registered in one browser logs in passwordlessly and as a second factor in another', async () => {
  const origin = `http://localhost:${server.port}`;
  const username = uniqueName('passkey');
  let credential;
  const first = await launch();
  try {
    const { page } = first;
    const { cdp, authenticatorId } = await virtualAuthenticator(first, page);
    await openApiPage(page, origin);
    const registered = await page.evaluate(
      async ({ username, password }) => {
        const client = window.vestibule.createClient();
        await client.signup({ username, password });
        const made = await client.passkeys.register({ name: 'virtual' });
        return { ...made, listed: await client.passkeys.list() };
      },
      { username, password: PASSWORD },
    );
    assert.equal(registered.name, 'virtual');
    assert.equal(registered.recovery_codes?.length, 10, 'the first factor brings recovery codes');
    assert.deepEqual(registered.listed, [{ id: registered.id, name: 'virtual' }]);
    const { credentials } = await cdp.send('WebAuthn.getCredentials', { authenticatorId });
    assert.equal(credentials.length, 1);
    assert.equal(credentials[0].isResidentCredential, true, 'a discoverable credential');
    assert.equal(credentials[0].rpId, 'localhost');
    credential = credentials[0];
    assert.deepEqual(first.consoleErrors, []);
  } finally {
    await first.close();
  }

  // A fresh browser profile: no cookie, only the passkey on its authenticator.
  const second = await launch();
  try {
    const { page } = second;
    const { cdp, authenticatorId } = await virtualAuthenticator(second, page);
    await cdp.send('WebAuthn.addCredential', { authenticatorId, credential });
    await openApiPage(page, origin);
    const who = await page.evaluate(async () => {
      const client = window.vestibule.createClient();
      const before = await client.me();
      const user = await client.passkeys.login();
      const me = await client.me();
      return { before, user: user.username, me: me?.username };
    });
    assert.deepEqual(who, { before: null, user: username, me: username });
    // The password alone is no longer enough: the passkey is the second factor.
    const mfa = await page.evaluate(
      async ({ username, password }) => {
        const client = window.vestibule.createClient();
        await client.logout();
        const answer = await client.login({ username, password });
        const pendingMe = await client.me();
        const user = await client.mfa.webauthn();
        return { answer, pendingMe, user: user.username, me: (await client.me())?.username };
      },
      { username, password: PASSWORD },
    );
    assert.equal(mfa.answer.mfa_required, true);
    assert.deepEqual(mfa.answer.methods, ['webauthn', 'recovery']);
    assert.equal(mfa.pendingMe, null);
    assert.equal(mfa.user, username);
    assert.equal(mfa.me, username);
    const { credentials } = await cdp.send('WebAuthn.getCredentials', { authenticatorId });
    assert.ok(credentials[0].signCount >= 2, 'the authenticator signed twice');
    assert.deepEqual(second.consoleErrors, []);
  } finally {
    await second.close();
  }
});
