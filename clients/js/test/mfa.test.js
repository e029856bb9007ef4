// vestibule-client's second factors against a real `vestibule serve`: TOTP enrolment and login
// (cookie and bearer), recovery codes, and the WebAuthn plumbing (base64url both ways) with a
// stand-in for navigator.credentials.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';

import { createClient, VestibuleError } from '../src/index.js';
import { cookieJarFetch, PASSWORD, startServer, uniqueName } from './support.js';

/** @type {Awaited<ReturnType<typeof startServer>>} */
let server;
before(async () => {
  // A domain name in public_url: passkeys need one (browsers refuse IP addresses as RP IDs).
  server = await startServer({
    toml: (port) => `listen = "127.0.0.1:${port}"\npublic_url = "http://localhost:${port}"\n[auth]\nsignup = true\n`,
  });
});
after(async () => {
  await server?.stop();
});

/** RFC 4648 base32 → bytes. */
function base32(s) {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
  let bits = 0;
  let value = 0;
  const out = [];
  for (const c of s.replace(/=+$/, '').toUpperCase()) {
    value = (value << 5) | alphabet.indexOf(c);
    bits += 5;
    if (bits >= 8) {
      bits -= 8;
      out.push((value >>> bits) & 0xff);
    }
  }
  return Buffer.from(out);
}

/** RFC 6238 (SHA-1, 6 digits, 30 s) at `steps` steps from now, computed here independently. */
function totp(secret, steps = 0) {
  const counter = Math.floor(Date.now() / 1000 / 30) + steps;
  const msg = Buffer.alloc(8);
  msg.writeBigUInt64BE(BigInt(counter));
  const h = createHmac('sha1', base32(secret)).update(msg).digest();
  const off = h[19] & 15;
  const n = ((h[off] & 0x7f) << 24) | (h[off + 1] << 16) | (h[off + 2] << 8) | h[off + 3];
  return String(n % 1_000_000).padStart(6, '0');
}

/** Waits (≤ 6 s) until the 30 s step has 6 s left, so "next step" codes keep their meaning. */
async function settle() {
  const left = 30 - (Math.floor(Date.now() / 1000) % 30);
  if (left < 6) await new Promise((r) => setTimeout(r, (left + 1) * 1000));
}

function client(transport = 'cookie', extra = {}) {
  const jar = cookieJarFetch();
  return { client: createClient({ baseUrl: server.url, transport, fetch: jar.fetch, ...extra }), ...jar };
}

/** A user with TOTP on; returns the name, the secret and the recovery codes. */
async function withTotp() {
  const { client: c } = client();
  const username = uniqueName('mfa');
  await c.signup({ username, password: PASSWORD });
  const enrolment = await c.totp.enroll();
  assert.match(enrolment.otpauth_uri, /^otpauth:\/\/totp\//);
  assert.match(enrolment.qr_svg, /<svg/);
  const codes = await c.totp.confirm(totp(enrolment.secret));
  assert.equal(codes.length, 10);
  return { username, secret: enrolment.secret, codes, owner: c };
}

describe('second factors', () => {
  test('cookie login answers mfa_required without throwing, then a TOTP code logs in', async () => {
    await settle();
    const { username, secret } = await withTotp();
    let fired = 0;
    const { client: c } = client('cookie', { onUnauthenticated: () => (fired += 1) });
    const answer = await c.login({ username, password: PASSWORD });
    assert.equal(answer.mfa_required, true);
    assert.ok(answer.methods.includes('totp'));
    assert.equal(await c.me(), null, 'the pending state is nobody');
    // The confirming code was spent: refused, as a VestibuleError, without the 401 hook.
    await assert.rejects(c.mfa.totp(totp(secret)), (e) => e instanceof VestibuleError && e.code === 'mfa_code_invalid');
    assert.equal(fired, 0);
    const user = await c.mfa.totp(totp(secret, 1));
    assert.equal(user.username, username);
    assert.deepEqual(await c.me(), user);
    // The CSRF token of the new session works for writes.
    await c.tokens.create({ name: 'after-mfa' });
  });

  test('bearer login keeps the pending token for mfa calls only, then the real one', async () => {
    await settle();
    const { username, secret } = await withTotp();
    const { client: c, requests } = client('bearer');
    const answer = await c.login({ username, password: PASSWORD });
    assert.equal(answer.mfa_required, true);
    const pending = c.getToken();
    assert.match(pending || '', /^vst_/);
    const user = await c.mfa.totp(totp(secret, 1));
    assert.equal(user.username, username);
    assert.notEqual(c.getToken(), pending);
    assert.equal((await c.me())?.username, username);
    for (const r of requests) assert.equal(r.credentials, 'omit');
  });

  test('a recovery code logs in once; TOTP can be removed', async () => {
    const { username, codes, owner } = await withTotp();
    const { client: c } = client();
    await c.login({ username, password: PASSWORD });
    assert.equal((await c.mfa.recovery(codes[0])).username, username);
    const { client: d } = client();
    await d.login({ username, password: PASSWORD });
    await assert.rejects(d.mfa.recovery(codes[0]), (e) => e instanceof VestibuleError && e.code === 'mfa_code_invalid');
    await owner.totp.remove();
    const { client: e } = client();
    assert.equal((await e.login({ username, password: PASSWORD })).username, username);
  });

  test('passkey registration converts the options to buffers and the credential to base64url', async () => {
    /** @type {any} */
    let seen;
    const fake = {
      async create(/** @type {any} */ options) {
        seen = options;
        const bytes = (/** @type {number[]} */ ...b) => new Uint8Array(b).buffer;
        return {
          id: 'AQID',
          rawId: bytes(1, 2, 3),
          type: 'public-key',
          response: { clientDataJSON: bytes(123, 125), attestationObject: bytes(0xa0), getTransports: () => ['internal'] },
          getClientExtensionResults: () => ({}),
        };
      },
      async get() {
        throw new Error('not used');
      },
    };
    const jar = cookieJarFetch();
    /** @type {any} */
    let sent;
    const spy = async (/** @type {any} */ input, /** @type {any} */ init = {}) => {
      if (String(input).endsWith('/register/finish')) sent = JSON.parse(init.body);
      return jar.fetch(input, init);
    };
    const c = createClient({ baseUrl: server.url, fetch: spy, credentials: fake });
    const requests = jar.requests;
    await c.signup({ username: uniqueName('pk'), password: PASSWORD });
    await assert.rejects(c.passkeys.register({ name: 'laptop' }), (e) => e instanceof VestibuleError && e.code === 'webauthn_failed');
    assert.ok(seen.publicKey.challenge instanceof ArrayBuffer);
    assert.ok(seen.publicKey.user.id instanceof ArrayBuffer);
    assert.equal(seen.publicKey.rp.id, 'localhost');
    const finish = requests.find((r) => r.url.endsWith('/auth/passkeys/register/finish'));
    assert.ok(finish, 'finish was called');
    assert.deepEqual(sent?.credential, {
      id: 'AQID',
      rawId: 'AQID',
      type: 'public-key',
      response: { clientDataJSON: 'e30', attestationObject: 'oA', transports: ['internal'] },
      extensions: {},
    });
    assert.equal(sent?.name, 'laptop');
  });

  test('passkeys.login refuses the bearer transport up front', async () => {
    const { client: c } = client('bearer', { credentials: { create: async () => null, get: async () => null } });
    await assert.rejects(c.passkeys.login(), (e) => e instanceof VestibuleError && e.code === 'unsupported_transport');
  });
});
