// vestibule-client's second factors against a real `vestibule serve`: TOTP enrolment and login
// (cookie and bearer), recovery codes (status, regeneration, a first passkey's set), and the
// WebAuthn plumbing (base64url both ways) with stand-ins for navigator.credentials.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, createHmac } from 'node:crypto';

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

/** A CBOR (RFC 8949) head: major type, argument. */
function cborHead(major, n) {
  const m = major << 5;
  if (n < 24) return Buffer.from([m | n]);
  if (n < 256) return Buffer.from([m | 24, n]);
  return Buffer.from([m | 25, n >> 8, n & 0xff]);
}
const cborText = (/** @type {string} */ s) => Buffer.concat([cborHead(3, Buffer.byteLength(s)), Buffer.from(s)]);
const cborBytes = (/** @type {Buffer} */ b) => Buffer.concat([cborHead(2, b.length), b]);
const arrayBuffer = (/** @type {Buffer} */ b) => b.buffer.slice(b.byteOffset, b.byteOffset + b.length);

/**
 * A software authenticator for `navigator.credentials.create` from `origin`: a new credential
 * each call, "none" attestation, user present and verified, an ES256 key (the P-256 base point:
 * a valid key; this stand-in never signs, so it cannot log in).
 */
function softAuthenticator(origin, prefix = 'soft-passkey') {
  const gx = Buffer.from('6b17d1f2e12c4247f8bce6e563a440f277037d812deb33a0f4a13945d898c296', 'hex');
  const gy = Buffer.from('4fe342e2fe1a7f9b8ee7eb4a7c0f9e162bce33576b315ececbb6406837bf51f5', 'hex');
  let made = 0;
  return {
    async create(/** @type {any} */ options) {
      const pk = options.publicKey;
      made += 1;
      const credId = Buffer.from(`${prefix}-${made}`.padEnd(16, '-'));
      const clientData = Buffer.from(JSON.stringify({
        type: 'webauthn.create',
        challenge: Buffer.from(pk.challenge).toString('base64url'),
        origin,
        crossOrigin: false,
      }));
      // COSE_Key {1: 2 (EC2), 3: -7 (ES256), -1: 1 (P-256), -2: x, -3: y}
      const cose = Buffer.concat([Buffer.from([0xa5, 0x01, 0x02, 0x03, 0x26, 0x20, 0x01, 0x21]), cborBytes(gx), Buffer.from([0x22]), cborBytes(gy)]);
      const idLength = Buffer.alloc(2);
      idLength.writeUInt16BE(credId.length);
      const authData = Buffer.concat([
        createHash('sha256').update(pk.rp.id).digest(),
        Buffer.from([0x45, 0, 0, 0, 0]), // UP | UV | AT, signature counter 0
        Buffer.alloc(16), // AAGUID
        idLength,
        credId,
        cose,
      ]);
      const attestation = Buffer.concat([
        Buffer.from([0xa3]),
        cborText('fmt'), cborText('none'),
        cborText('attStmt'), Buffer.from([0xa0]),
        cborText('authData'), cborBytes(authData),
      ]);
      return {
        id: credId.toString('base64url'),
        rawId: arrayBuffer(credId),
        type: 'public-key',
        response: { clientDataJSON: arrayBuffer(clientData), attestationObject: arrayBuffer(attestation), getTransports: () => ['internal'] },
        getClientExtensionResults: () => ({}),
      };
    },
    async get() {
      throw new Error('not used');
    },
  };
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

  test('mfa.status counts the recovery codes left; regenerateRecoveryCodes replaces them all', async () => {
    const { username, codes, owner } = await withTotp();
    assert.deepEqual(await owner.mfa.status(), { totp: true, passkeys: 0, recovery_codes_left: 10 });
    const fresh = await owner.mfa.regenerateRecoveryCodes();
    assert.equal(fresh.length, 10);
    assert.ok(fresh.every((c) => !codes.includes(c)));
    const { client: c } = client('bearer');
    await c.login({ username, password: PASSWORD });
    await assert.rejects(c.mfa.recovery(codes[0]), (e) => e instanceof VestibuleError && e.code === 'mfa_code_invalid');
    assert.equal((await c.mfa.recovery(fresh[0])).username, username);
    assert.equal((await owner.mfa.status()).recovery_codes_left, 9);
    // Without a second factor there is nothing to regenerate.
    await owner.totp.remove();
    assert.deepEqual(await owner.mfa.status(), { totp: false, passkeys: 0, recovery_codes_left: 0 });
    await assert.rejects(owner.mfa.regenerateRecoveryCodes(), (e) => e instanceof VestibuleError && e.status === 409 && e.code === 'mfa_factor_required');
  });

  test('a first passkey brings recovery codes, a second one none', async () => {
    const jar = cookieJarFetch();
    const credentials = softAuthenticator(`http://localhost:${server.port}`);
    const c = createClient({ baseUrl: server.url, fetch: jar.fetch, credentials });
    const username = uniqueName('pk');
    await c.signup({ username, password: PASSWORD });
    const first = await c.passkeys.register({ name: 'laptop' });
    assert.equal(first.name, 'laptop');
    assert.equal(first.recovery_codes?.length, 10);
    const second = await c.passkeys.register({ name: 'phone' });
    assert.equal(second.recovery_codes, undefined);
    assert.deepEqual(await c.mfa.status(), { totp: false, passkeys: 2, recovery_codes_left: 10 });
    const { client: d } = client();
    const answer = await d.login({ username, password: PASSWORD });
    assert.deepEqual(answer.methods, ['webauthn', 'recovery']);
    assert.equal((await d.mfa.recovery(first.recovery_codes?.[0] ?? '')).username, username);
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

  test('reauth sends the second factor: the password alone cannot remove TOTP, a recovery code can', async () => {
    await settle();
    const { username, secret, codes } = await withTotp();
    // A bearer login through the factor: its new token has not proved one itself.
    const { client: c, requests } = client('bearer');
    await c.login({ username, password: PASSWORD });
    await c.mfa.totp(totp(secret, 1));
    const aal1 = await c.reauth({ password: PASSWORD });
    assert.equal(aal1.second_factor, false);
    await assert.rejects(c.totp.remove(), (e) => e instanceof VestibuleError && e.status === 403 && e.code === 'mfa_reauth_required');
    await assert.rejects(c.mfa.regenerateRecoveryCodes(), (e) => e instanceof VestibuleError && e.code === 'mfa_reauth_required');
    await assert.rejects(c.reauth({ password: PASSWORD, code: '000000' === totp(secret, 1) ? '111111' : '000000' }), (e) => e instanceof VestibuleError && e.code === 'mfa_code_invalid');
    const aal2 = await c.reauth({ password: PASSWORD, recoveryCode: codes[0] });
    assert.equal(aal2.second_factor, true);
    const sent = requests.filter((r) => r.url.endsWith('/auth/reauth')).map((r) => JSON.parse(String(r.body)));
    assert.deepEqual(sent.at(-1), { password: PASSWORD, recovery_code: codes[0] });
    await c.totp.remove();
    assert.deepEqual(await c.mfa.status(), { totp: false, passkeys: 0, recovery_codes_left: 0 });
  });

  test('reauth with passkey: true runs the reauth ceremony and sends the credential', async () => {
    const soft = softAuthenticator(`http://localhost:${server.port}`, 'reauth-passkey');
    /** @type {any} */
    let asked;
    const credentials = {
      create: soft.create,
      async get(/** @type {any} */ options) {
        asked = options;
        const bytes = (/** @type {number[]} */ ...b) => new Uint8Array(b).buffer;
        return {
          id: 'AQID',
          rawId: bytes(1, 2, 3),
          type: 'public-key',
          response: { clientDataJSON: bytes(123, 125), authenticatorData: bytes(1), signature: bytes(2), userHandle: null },
          getClientExtensionResults: () => ({}),
        };
      },
    };
    const jar = cookieJarFetch();
    const c = createClient({ baseUrl: server.url, fetch: jar.fetch, credentials });
    await c.signup({ username: uniqueName('pk'), password: PASSWORD });
    await c.passkeys.register({ name: 'laptop' });
    // This stand-in cannot sign: the server refuses the answer, after the whole round trip.
    await assert.rejects(c.reauth({ password: PASSWORD, passkey: true }), (e) => e instanceof VestibuleError && e.code === 'webauthn_failed');
    assert.ok(asked.publicKey.challenge instanceof ArrayBuffer);
    assert.ok(jar.requests.some((r) => r.url.endsWith('/auth/reauth/webauthn/start')));
    const reauth = jar.requests.filter((r) => r.url.endsWith('/auth/reauth')).at(-1);
    const body = JSON.parse(String(reauth?.body));
    assert.equal(body.password, PASSWORD);
    assert.equal(body.credential.id, 'AQID');
  });

  test('passkeys.login refuses the bearer transport up front', async () => {
    const { client: c } = client('bearer', { credentials: { create: async () => null, get: async () => null } });
    await assert.rejects(c.passkeys.login(), (e) => e instanceof VestibuleError && e.code === 'unsupported_transport');
  });
});
