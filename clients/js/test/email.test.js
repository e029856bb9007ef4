// Password recovery and address verification through the client, against the real binary in
// demo mode with the `log` transport: the messages (and their links) are read from the
// server's standard output, as a developer would read them in the terminal.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

import { createClient, VestibuleError } from '../src/index.js';
import { startServer, cookieJarFetch } from './support.js';

const PASSWORD = 'correct horse battery staple';
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Waits for the `n`-th link to `{path}?token=` printed by the log transport. */
async function linkToken(server, path, n) {
  const deadline = Date.now() + 10_000;
  const re = new RegExp(`${path}\\?token=([A-Za-z0-9_]+)`, 'g');
  for (;;) {
    const out = readFileSync(join(server.dir, 'server.out'), 'utf8');
    const found = [...out.matchAll(re)].map((m) => m[1]);
    if (found.length >= n) return found[n - 1];
    if (Date.now() > deadline) throw new Error(`no link ${n} to ${path} in:\n${out}`);
    await sleep(50);
  }
}

test('signup with an address, verify it, forget the password and reset it by email', async () => {
  const server = await startServer();
  try {
    const client = createClient({ baseUrl: server.url, fetch: cookieJarFetch().fetch });
    const user = await client.signup({ username: 'mailer', password: PASSWORD, email: 'mailer@example.test' });
    assert.equal(user.username, 'mailer');
    assert.deepEqual(await client.email.status(), { email: 'mailer@example.test', verified: false, pendingEmail: null });
    const verify = await linkToken(server, '/verify', 1);
    assert.deepEqual(await client.email.verify(verify), { email: 'mailer@example.test' });
    assert.deepEqual(await client.email.status(), { email: 'mailer@example.test', verified: true, pendingEmail: null });
    await assert.rejects(client.email.verify(verify), (e) => e instanceof VestibuleError && e.code === 'verification_token_invalid');
    await client.email.resend('mailer');
    assert.deepEqual(await client.email.change('mailer@new.test'), { pendingEmail: 'mailer@new.test' });
    assert.deepEqual(await client.email.status(), { email: 'mailer@example.test', verified: true, pendingEmail: 'mailer@new.test' });
    // (The resend above sent nothing: the address was verified already.)
    await client.email.verify(await linkToken(server, '/verify', 2));

    const anon = createClient({ baseUrl: server.url, fetch: cookieJarFetch().fetch });
    await anon.password.forgot('mailer@new.test');
    await anon.password.forgot('nobody@example.test');
    const token = await linkToken(server, '/reset', 1);
    await anon.password.reset({ token, newPassword: 'a brand new passphrase' });
    await assert.rejects(
      anon.password.reset({ token, newPassword: 'another new passphrase' }),
      (e) => e instanceof VestibuleError && e.code === 'reset_token_invalid',
    );
    // The old session ended; the address logs in with the new password.
    assert.equal(await client.me(), null);
    const again = await anon.login({ username: 'mailer@new.test', password: 'a brand new passphrase' });
    assert.equal(again.username, 'mailer');
  } finally {
    await server.stop();
  }
});
