// vestibule-client: the browser half of a Vestibule session, so no call forgets
// `credentials: 'include'`, the CSRF header, or what to do on a 401.
//
// Zero dependencies and no build step: this file is what the npm package ships, and the very
// same file is what `vestibule serve --demo` serves at /_vestibule/client.js.
// Types: index.d.ts beside this file (checked by `tsc --noEmit` in the tests).

/** Methods that never change state: they need no CSRF token. */
const SAFE_METHODS = new Set(['GET', 'HEAD', 'OPTIONS', 'TRACE']);

/** 403 codes that a fresh CSRF token (GET /auth/csrf) can cure. */
const CSRF_RETRY_CODES = new Set(['csrf_token_mismatch', 'csrf_token_missing']);

/**
 * Every failure the client reports: an HTTP error answer of the server (its JSON body
 * `{code, message, hint}` plus the status), or a request that never got an answer
 * (`status` 0, `code` `network_error` or `cors_error`).
 */
export class VestibuleError extends Error {
  /**
   * @param {{status: number, code: string, message: string, hint?: string | null, cause?: unknown}} fields
   */
  constructor({ status, code, message, hint, cause }) {
    super(message, cause === undefined ? undefined : { cause });
    this.name = 'VestibuleError';
    /** HTTP status; 0 when no answer could be read. */
    this.status = status;
    /** Stable machine-readable code, e.g. `not_authenticated`, `csrf_token_mismatch`. */
    this.code = code;
    /** What to do about it, when the server (or the client) knows; else ''. */
    this.hint = hint || '';
  }
}

/**
 * Keeps the bearer token in a variable: a reload forgets it. This is the default because a
 * script injected into the page (XSS) later cannot read it back from storage.
 * @returns {import('./index.js').TokenStorage}
 */
export function memoryStorage() {
  /** @type {string | null} */
  let token = null;
  return {
    get: () => token,
    set: (value) => {
      token = value;
    },
  };
}

/**
 * Opt-in: keeps the bearer token in `sessionStorage`, so it survives a reload of this tab (and
 * only this tab). The trade-off: any script running on the page — including an XSS payload —
 * can read sessionStorage and take the token away to use elsewhere until it expires, whereas a
 * token held only in memory (the default) or an HttpOnly cookie cannot be exfiltrated that way.
 * Use it only with a strict Content-Security-Policy and short token lifetimes.
 * @param {string} [key] the sessionStorage key
 * @param {Storage} [store] defaults to `globalThis.sessionStorage`
 * @returns {import('./index.js').TokenStorage}
 */
export function sessionStorageAdapter(key = 'vestibule.token', store) {
  const s = store || globalThis.sessionStorage;
  if (!s) throw new TypeError('sessionStorageAdapter: no sessionStorage in this environment');
  return {
    get: () => s.getItem(key),
    set: (value) => {
      if (value === null) s.removeItem(key);
      else s.setItem(key, value);
    },
  };
}

/**
 * @param {unknown} v
 * @returns {v is Record<string, any>}
 */
function isObject(v) {
  return typeof v === 'object' && v !== null;
}

/**
 * Reads a JSON body without failing: null when there is none or it is not JSON.
 * @param {Response} res
 */
async function readJson(res) {
  if (res.status === 204 || res.status === 205) return null;
  const type = res.headers.get('content-type') || '';
  if (!type.includes('json')) return null;
  try {
    return await res.json();
  } catch {
    return null;
  }
}

/**
 * The error for a non-2xx answer.
 * @param {Response} res
 * @param {unknown} body
 */
function httpError(res, body) {
  if (isObject(body) && typeof body.code === 'string') {
    return new VestibuleError({
      status: res.status,
      code: body.code,
      message: typeof body.message === 'string' ? body.message : `HTTP ${res.status}`,
      hint: typeof body.hint === 'string' ? body.hint : '',
    });
  }
  return new VestibuleError({
    status: res.status,
    code: 'http_error',
    message: `HTTP ${res.status}${res.statusText ? ` ${res.statusText}` : ''}`,
    hint: res.status === 502 || res.status === 504 ? 'a proxy in front of the API could not reach it' : '',
  });
}

/**
 * base64url (no padding) → bytes, for the WebAuthn options the server sends.
 * @param {string} s
 * @returns {ArrayBuffer}
 */
function fromBase64url(s) {
  const b64 = s.replace(/-/g, '+').replace(/_/g, '/') + '==='.slice((s.length + 3) % 4);
  const bin = atob(b64);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i += 1) out[i] = bin.charCodeAt(i);
  return out.buffer;
}

/**
 * bytes → base64url (no padding), for the credentials the browser returns.
 * @param {ArrayBuffer | ArrayBufferView} buf
 * @returns {string}
 */
function toBase64url(buf) {
  const bytes = buf instanceof ArrayBuffer ? new Uint8Array(buf) : new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength);
  let bin = '';
  for (let i = 0; i < bytes.length; i += 1) bin += String.fromCharCode(bytes[i]);
  return btoa(bin).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

/**
 * The server's `navigator.credentials.create` options (binary fields base64url) as the browser
 * wants them (ArrayBuffers).
 * @param {any} options
 */
function creationOptions(options) {
  const pk = { ...options.publicKey };
  pk.challenge = fromBase64url(pk.challenge);
  pk.user = { ...pk.user, id: fromBase64url(pk.user.id) };
  if (Array.isArray(pk.excludeCredentials)) {
    pk.excludeCredentials = pk.excludeCredentials.map((/** @type {any} */ c) => ({ ...c, id: fromBase64url(c.id) }));
  }
  return { publicKey: pk };
}

/**
 * The server's `navigator.credentials.get` options as the browser wants them.
 * @param {any} options
 */
function requestOptions(options) {
  const pk = { ...options.publicKey };
  pk.challenge = fromBase64url(pk.challenge);
  if (Array.isArray(pk.allowCredentials)) {
    pk.allowCredentials = pk.allowCredentials.map((/** @type {any} */ c) => ({ ...c, id: fromBase64url(c.id) }));
  }
  /** @type {Record<string, unknown>} */
  const out = { publicKey: pk };
  if (options.mediation) out.mediation = options.mediation;
  return out;
}

/**
 * A `PublicKeyCredential` as JSON for the server (binary fields base64url).
 * @param {any} cred
 */
function credentialJson(cred) {
  const r = cred.response;
  /** @type {Record<string, unknown>} */
  const response = { clientDataJSON: toBase64url(r.clientDataJSON) };
  if (r.attestationObject) {
    response.attestationObject = toBase64url(r.attestationObject);
    if (typeof r.getTransports === 'function') response.transports = r.getTransports();
  }
  if (r.authenticatorData) response.authenticatorData = toBase64url(r.authenticatorData);
  if (r.signature) response.signature = toBase64url(r.signature);
  if (r.userHandle) response.userHandle = toBase64url(r.userHandle);
  return {
    id: cred.id,
    rawId: toBase64url(cred.rawId),
    type: cred.type,
    response,
    extensions: typeof cred.getClientExtensionResults === 'function' ? cred.getClientExtensionResults() : {},
  };
}

/** 401 codes of `POST /auth/reauth` that refuse the proof, not the session. */
const REAUTH_REFUSALS = new Set(['invalid_credentials', 'mfa_code_invalid', 'webauthn_failed']);

/**
 * `/auth/oidc/{provider}/start?return_to=…` (the server checks return_to against public_url and
 * spa_origins: no open redirect). Without `returnTo`, the current page.
 * @param {string} baseHref
 * @param {{ href: string } | null} page
 * @param {string} provider
 * @param {string | undefined} returnTo
 */
function oidcStartUrl(baseHref, page, provider, returnTo) {
  const to = returnTo !== undefined ? returnTo : page ? page.href : undefined;
  const query = to !== undefined ? `?return_to=${encodeURIComponent(String(to))}` : '';
  return `${baseHref}/auth/oidc/${encodeURIComponent(String(provider))}/start${query}`;
}

/**
 * Creates a client bound to one Vestibule server.
 * @param {import('./index.js').ClientOptions} [options]
 * @returns {import('./index.js').VestibuleClient}
 */
export function createClient(options = {}) {
  const transport = options.transport || 'cookie';
  if (transport !== 'cookie' && transport !== 'bearer') {
    throw new TypeError(`createClient: transport must be 'cookie' or 'bearer', not ${JSON.stringify(transport)}`);
  }
  const page = globalThis.location && typeof globalThis.location.href === 'string' ? globalThis.location : null;
  const rawBase = options.baseUrl || '';
  if (!rawBase && !page) {
    throw new TypeError('createClient: baseUrl is required outside a browser page (e.g. http://localhost:8000)');
  }
  // The API's origin + path prefix, without a trailing slash.
  const base = new URL(rawBase || '/', page ? page.href : undefined);
  const baseHref = base.href.replace(/\/+$/, '');
  const apiOrigin = base.origin;
  const doFetch = options.fetch || globalThis.fetch.bind(globalThis);
  const storage = options.storage || memoryStorage();
  const onUnauthenticated = options.onUnauthenticated;
  /**
   * `onSessionChange` listeners: told the user (or null) whenever the client learns who is
   * signed in — login, signup, a completed second factor, me(), logout, and any 401.
   * @type {Set<(user: import('./index.js').User | null) => void>}
   */
  const sessionListeners = new Set();
  /** @param {import('./index.js').User | null} user */
  function emit(user) {
    for (const listener of [...sessionListeners]) {
      try {
        listener(user);
      } catch (listenerError) {
        if (typeof globalThis.reportError === 'function') globalThis.reportError(listenerError);
        else console.error('vestibule-client: an onSessionChange listener threw', listenerError);
      }
    }
  }
  /** `navigator.credentials`, or a stand-in (tests, other WebAuthn front ends). */
  const credentialsApi = () => {
    const api = options.credentials || globalThis.navigator?.credentials;
    if (!api) {
      throw new VestibuleError({
        status: 0,
        code: 'webauthn_unsupported',
        message: 'this environment has no navigator.credentials (WebAuthn)',
        hint: 'passkeys need a browser page in a secure context (https, or http://localhost)',
      });
    }
    return api;
  };

  /**
   * The CSRF token of the cookie session: a string, null (the server said no session exists,
   * so none is needed), or undefined (not known yet: ask before the next unsafe request).
   * @type {string | null | undefined}
   */
  let csrfToken;

  /** @param {string | URL} input */
  function resolve(input) {
    if (input instanceof URL) return input;
    if (/^[a-z][a-z0-9+.-]*:/i.test(input)) return new URL(input);
    if (input.startsWith('/')) return new URL(baseHref + input);
    return new URL(input, `${baseHref}/`);
  }

  /** @param {VestibuleError} err */
  function unauthenticated(err) {
    if (transport === 'bearer') storage.set(null);
    else csrfToken = undefined;
    emit(null);
    if (typeof onUnauthenticated !== 'function') return;
    try {
      onUnauthenticated(err);
    } catch (hookError) {
      // Never let a broken hook hide the error being thrown; report it on its own.
      if (typeof globalThis.reportError === 'function') globalThis.reportError(hookError);
      else console.error('vestibule-client: onUnauthenticated threw', hookError);
    }
  }

  /**
   * A fetch that failed without an answer: tells a dead network from a CORS refusal where the
   * browser allows. A cross-origin API that answers a `no-cors` probe is up, so the real request
   * was refused by CORS (or its preflight): name the config key that allows the page's origin.
   * @param {unknown} cause
   * @param {URL} url
   */
  async function transportFailure(cause, url) {
    const own = url.origin === apiOrigin;
    if (page !== null && url.origin !== page.origin) {
      let reachable = false;
      try {
        const probe = own ? `${apiOrigin}/healthz` : `${url.origin}/`;
        await doFetch(probe, { mode: 'no-cors', credentials: 'omit', cache: 'no-store' });
        reachable = true;
      } catch {
        reachable = false;
      }
      if (reachable) {
        return new VestibuleError({
          status: 0,
          code: 'cors_error',
          message: `the server at ${url.origin} answered, but the browser hid the answer from this page (CORS)`,
          hint: own
            ? `add this page's origin ${page.origin} to spa_origins in the server's configuration (VESTIBULE_SPA_ORIGINS), and check the browser console for the exact CORS message`
            : `the server at ${url.origin} does not allow requests from ${page.origin}; see the browser console for the exact CORS message`,
          cause,
        });
      }
    }
    return new VestibuleError({
      status: 0,
      code: 'network_error',
      message: `cannot reach ${url.origin}: ${cause instanceof Error ? cause.message : String(cause)}`,
      hint: own ? `is the server at ${apiOrigin} running, and is baseUrl right?` : `is ${url.origin} up and reachable?`,
      cause,
    });
  }

  /**
   * One request with this client's credentials rules.
   * @param {URL} url
   * @param {RequestInit} init
   * @param {boolean} own whether `url` is the API's: only then do credentials go along
   * @param {boolean} [anonymous] bearer: send no token (login and signup start a new session)
   */
  async function send(url, init, own, anonymous = false) {
    const headers = new Headers(init.headers);
    const method = (init.method || 'GET').toUpperCase();
    /** @type {RequestCredentials} */
    let credentials = init.credentials || 'same-origin';
    if (own) {
      if (transport === 'cookie') {
        credentials = 'include';
        if (!SAFE_METHODS.has(method) && typeof csrfToken === 'string' && !headers.has('x-csrf-token')) {
          headers.set('X-CSRF-Token', csrfToken);
        }
      } else {
        credentials = 'omit';
        const token = anonymous ? null : storage.get();
        if (token && !headers.has('authorization')) headers.set('Authorization', `Bearer ${token}`);
      }
    }
    try {
      return await doFetch(url.href, { ...init, method, headers, credentials });
    } catch (err) {
      if (isObject(err) && /** @type {{name?: unknown}} */ (err).name === 'AbortError') throw err;
      throw await transportFailure(err, url);
    }
  }

  /** GET /auth/csrf: the cookie session's CSRF token, or null when no session exists. */
  async function refreshCsrf() {
    if (transport === 'bearer') return null;
    const res = await send(resolve('/auth/csrf'), { method: 'GET', headers: { Accept: 'application/json' } }, true);
    const body = await readJson(res);
    if (!res.ok) throw httpError(res, body);
    csrfToken = isObject(body) && typeof body.csrf_token === 'string' ? body.csrf_token : null;
    return csrfToken;
  }

  /**
   * The shared path of every call: credentials, CSRF token (fetched first when unknown), and a
   * single refresh-and-retry on a stale token. Returns the raw answer.
   * @param {URL} url
   * @param {RequestInit} init
   * @param {{retryable: boolean, anonymous?: boolean}} opts
   */
  async function exchange(url, init, { retryable, anonymous = false }) {
    const own = url.origin === apiOrigin;
    const method = (init.method || 'GET').toUpperCase();
    const unsafe = !SAFE_METHODS.has(method);
    if (own && transport === 'cookie' && unsafe && csrfToken === undefined) await refreshCsrf();
    let res = await send(url, init, own, anonymous);
    if (own && transport === 'cookie' && unsafe && res.status === 403 && retryable) {
      const body = await readJson(res.clone());
      if (isObject(body) && CSRF_RETRY_CODES.has(/** @type {string} */ (body.code))) {
        // Once: a second refusal is returned to the caller, never looped on.
        await refreshCsrf();
        res = await send(url, init, own, anonymous);
      }
    }
    // `null` meant "no session, no token needed", but a write answered meanwhile may have
    // created one (an anonymous session: a counter, a cart, a passkey ceremony) whose token
    // this answer does not carry: the next write asks first instead of going out without a
    // token, being refused (`csrf_token_missing`, logged as `csrf.refused`) and retried.
    if (own && transport === 'cookie' && unsafe && csrfToken === null) csrfToken = undefined;
    return res;
  }

  /**
   * Calls an API route with a JSON body and returns the parsed JSON answer (null for 204).
   * @param {string} method
   * @param {string} path
   * @param {unknown} [body]
   * @param {{hook?: boolean, anonymous?: boolean, signal?: AbortSignal}} [opts] hook: whether a
   *   401 fires onUnauthenticated; anonymous: send no bearer token; signal: to abort the call
   */
  async function call(method, path, body, { hook = true, anonymous = false, signal } = {}) {
    /** @type {Record<string, string>} */
    const headers = { Accept: 'application/json' };
    /** @type {RequestInit} */
    const init = { method, headers };
    if (signal) init.signal = signal;
    if (body !== undefined) {
      headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    const res = await exchange(resolve(path), init, { retryable: true, anonymous });
    const data = await readJson(res);
    if (transport === 'cookie' && isObject(data) && 'csrf_token' in data) {
      csrfToken = typeof data.csrf_token === 'string' ? data.csrf_token : null;
    }
    if (!res.ok) {
      const err = httpError(res, data);
      if (res.status === 401 && hook) unauthenticated(err);
      throw err;
    }
    return data;
  }

  /**
   * Login and signup: the answer's user, keeping the bearer token or the CSRF token.
   * @param {string} path
   * @param {import('./index.js').Credentials} credentials
   */
  async function signIn(path, { username, password, email }) {
    /** @type {Record<string, string>} */
    const body = { username, password };
    if (typeof email === 'string' && email !== '') body.email = email;
    if (transport === 'bearer') body.transport = 'bearer';
    // A wrong password is a 401 too, but not a reason to route to the login page. A token
    // still held must not go along: a dead one would get the login refused as invalid_token.
    const data = await call('POST', path, body, { hook: false, anonymous: true });
    if (transport === 'bearer' && typeof data?.token === 'string') storage.set(data.token);
    // A second factor is due: the answer says which (the pending token, if bearer, is kept for
    // the mfa.* calls only — the server accepts it nowhere else).
    if (data?.mfa_required === true) return data;
    // Signed up but not logged in: the server waits for the address to be verified.
    if (data?.email_verification_required === true) return data;
    emit(data.user);
    return data.user;
  }

  /**
   * Completes a pending login (second factor) or a passwordless login: keeps the new bearer
   * token (the pending one is dead) and returns the user.
   * @param {string} path
   * @param {unknown} body
   * @param {{anonymous?: boolean}} [opts]
   */
  async function finishLogin(path, body, { anonymous = false } = {}) {
    // A wrong code is a 401 too, but not a reason to route to the login page.
    const data = await call('POST', path, body, { hook: false, anonymous });
    if (transport === 'bearer' && typeof data?.token === 'string') storage.set(data.token);
    emit(data.user);
    return data.user;
  }

  /** After the session ended on purpose: forget its credentials. */
  function forget() {
    if (transport === 'bearer') storage.set(null);
    else csrfToken = null;
  }

  /** @type {import('./index.js').VestibuleClient} */
  const client = {
    transport,
    baseUrl: baseHref,

    signup: (credentials) => signIn('/auth/signup', credentials),
    login: (credentials) => signIn('/auth/login', credentials),

    async logout() {
      if (transport === 'bearer' && !storage.get()) {
        emit(null);
        return;
      }
      try {
        await call('POST', '/auth/logout', undefined, { hook: false });
      } catch (err) {
        // Already gone (expired, revoked): that is what logging out wanted.
        if (!(err instanceof VestibuleError && err.status === 401)) throw err;
      }
      forget();
      emit(null);
    },

    async me() {
      // No token, no session: an answer too, for every onSessionChange listener.
      if (transport === 'bearer' && !storage.get()) {
        emit(null);
        return null;
      }
      try {
        const data = await call('GET', '/auth/me', undefined, { hook: false });
        emit(data.user);
        return data.user;
      } catch (err) {
        // The caller asked "who is signed in?": nobody is an answer, not an error.
        if (err instanceof VestibuleError && err.status === 401) {
          forget();
          if (transport === 'cookie') csrfToken = undefined;
          emit(null);
          return null;
        }
        throw err;
      }
    },

    async changePassword({ currentPassword, newPassword }) {
      const data = await call('POST', '/auth/password', {
        current_password: currentPassword,
        new_password: newPassword,
      });
      // Bearer: the session moved to a new token; the old one is dead.
      if (transport === 'bearer' && typeof data?.token === 'string') storage.set(data.token);
      return { user: data.user, ended: data.ended };
    },

    password: {
      // The same answer whether or not the account exists: nothing to read in it.
      async forgot(login) {
        await call('POST', '/auth/password/forgot', { login }, { hook: false, anonymous: true });
      },
      async reset({ token, newPassword, code, recoveryCode }) {
        // An account with a second factor proves it too (`second_factor_required` otherwise).
        const body = {
          token,
          new_password: newPassword,
          ...(typeof code === 'string' && code !== '' ? { code } : {}),
          ...(typeof recoveryCode === 'string' && recoveryCode !== '' ? { recovery_code: recoveryCode } : {}),
        };
        await call('POST', '/auth/password/reset', body, { hook: false, anonymous: true });
      },
    },

    email: {
      async verify(token) {
        const data = await call('POST', '/auth/email/verify', { token }, { hook: false, anonymous: true });
        return { email: data.email };
      },
      async resend(login) {
        await call('POST', '/auth/email/verify/resend', { login }, { hook: false, anonymous: true });
      },
      async change(email) {
        const data = await call('POST', '/auth/email', { email });
        return { pendingEmail: data.pending_email };
      },
      async status() {
        const data = await call('GET', '/auth/email');
        return { email: data.email, verified: data.verified, pendingEmail: data.pending_email };
      },
    },

    refreshCsrf,

    onSessionChange(listener) {
      sessionListeners.add(listener);
      return () => {
        sessionListeners.delete(listener);
      };
    },

    async reauth({ password, code, recoveryCode, passkey }) {
      // On an account with a second factor, managing factors needs one of them proved here too
      // (else `mfa_reauth_required`): a TOTP `code`, a `recoveryCode`, or `passkey: true` (asks
      // the browser for one of the user's passkeys).
      /** @type {Record<string, unknown>} */
      const body = { password };
      if (code !== undefined) body.code = code;
      if (recoveryCode !== undefined) body.recovery_code = recoveryCode;
      if (passkey) {
        const options = await call('POST', '/auth/reauth/webauthn/start');
        const cred = await credentialsApi().get(requestOptions(options));
        body.credential = credentialJson(cred);
      }
      try {
        return await call('POST', '/auth/reauth', body, { hook: false });
      } catch (err) {
        // A wrong password, code or passkey answer is a 401 that leaves the session alive: only
        // a dead session is "unauthenticated" (and drops a bearer token).
        if (err instanceof VestibuleError && err.status === 401 && !REAUTH_REFUSALS.has(err.code)) {
          unauthenticated(err);
        }
        throw err;
      }
    },

    mfa: {
      totp: (code) => finishLogin('/auth/mfa/totp', { code }),
      recovery: (code) => finishLogin('/auth/mfa/recovery', { code }),
      async webauthn() {
        const options = await call('POST', '/auth/mfa/webauthn/start', undefined, { hook: false });
        const cred = await credentialsApi().get(requestOptions(options));
        return finishLogin('/auth/mfa/webauthn/finish', { credential: credentialJson(cred) });
      },
      async status() {
        return call('GET', '/auth/mfa');
      },
      async regenerateRecoveryCodes() {
        const data = await call('POST', '/auth/mfa/recovery/regenerate');
        return data.recovery_codes;
      },
    },

    totp: {
      async enroll() {
        return call('POST', '/auth/mfa/totp/enroll');
      },
      async confirm(code) {
        const data = await call('POST', '/auth/mfa/totp/confirm', { code });
        return data.recovery_codes;
      },
      async remove() {
        await call('DELETE', '/auth/mfa/totp');
      },
    },

    passkeys: {
      async list() {
        const data = await call('GET', '/auth/passkeys');
        return data.passkeys;
      },
      async remove(id) {
        await call('DELETE', `/auth/passkeys/${encodeURIComponent(String(id))}`);
      },
      async register({ name } = {}) {
        const options = await call('POST', '/auth/passkeys/register/start');
        const cred = await credentialsApi().create(creationOptions(options));
        /** @type {Record<string, unknown>} */
        const body = { credential: credentialJson(cred) };
        if (name !== undefined) body.name = name;
        return call('POST', '/auth/passkeys/register/finish', body);
      },
      async login() {
        if (transport === 'bearer') {
          // The challenge lives in a cookie session between start and finish.
          throw new VestibuleError({
            status: 0,
            code: 'unsupported_transport',
            message: 'passwordless passkey login needs the cookie transport',
            hint: "create the client with transport: 'cookie' for passkeys.login()",
          });
        }
        const options = await call('POST', '/auth/passkey/login/start', undefined, { hook: false, anonymous: true });
        const cred = await credentialsApi().get(requestOptions(options));
        return finishLogin('/auth/passkey/login/finish', { credential: credentialJson(cred) }, { anonymous: true });
      },
    },

    oidc: {
      async providers() {
        return call('GET', '/auth/oidc/providers');
      },
      loginUrl(provider, { returnTo } = {}) {
        return oidcStartUrl(baseHref, page, provider, returnTo);
      },
      login(provider, options = {}) {
        // A full-page navigation: the provider's login page, then the callback, then returnTo
        // (with `oidc_error=<code>` or `mfa_required=1` in its query when there is more to do).
        if (!page || typeof globalThis.location.assign !== 'function') {
          throw new VestibuleError({
            status: 0,
            code: 'unsupported_environment',
            message: 'oidc.login() navigates the page: it needs a browser page',
            hint: 'outside a page, open oidc.loginUrl(provider) in a browser',
          });
        }
        globalThis.location.assign(oidcStartUrl(baseHref, page, provider, options.returnTo));
      },
      async link(provider, { returnTo, navigate } = {}) {
        // Links an identity at `provider` to the signed-in user (needs a recent `reauth`). The
        // server answers the provider's authorization URL; in a page the client goes there
        // (unless `navigate: false`), and the provider comes back to `returnTo` with
        // `oidc_linked=<provider>` or `oidc_error=<code>` in its query.
        /** @type {Record<string, unknown>} */
        const body = {};
        const to = returnTo !== undefined ? returnTo : page ? page.href : undefined;
        if (to !== undefined) body.return_to = String(to);
        const data = await call('POST', `/auth/oidc/${encodeURIComponent(String(provider))}/link`, body);
        if (navigate !== false && page && typeof globalThis.location.assign === 'function') {
          globalThis.location.assign(data.url);
        }
        return data.url;
      },
    },

    identities: {
      async list() {
        const data = await call('GET', '/auth/identities');
        return data.identities;
      },
      async unlink(id) {
        await call('DELETE', `/auth/identities/${encodeURIComponent(String(id))}`);
      },
    },

    sessions: {
      async list() {
        const data = await call('GET', '/auth/sessions');
        return data.sessions;
      },
      async revoke(id) {
        await call('DELETE', `/auth/sessions/${encodeURIComponent(id)}`);
      },
      async logoutAll() {
        await call('POST', '/auth/logout-all');
        forget();
        emit(null);
      },
    },

    tokens: {
      async create({ name, expiresInDays, scopes }) {
        /** @type {Record<string, unknown>} */
        const body = { name };
        if (expiresInDays !== undefined) body.expires_in_days = expiresInDays;
        if (scopes !== undefined) body.scopes = scopes;
        return call('POST', '/auth/tokens', body);
      },
      async list() {
        const data = await call('GET', '/auth/tokens');
        return data.tokens;
      },
      async revoke(id) {
        await call('DELETE', `/auth/tokens/${encodeURIComponent(String(id))}`);
      },
    },

    async fetch(input, init = {}) {
      let url;
      /** @type {RequestInit} */
      let reqInit = init;
      if (typeof Request !== 'undefined' && input instanceof Request) {
        // Buffer the body once, so the single CSRF retry can send it again.
        const method = (init.method || input.method).toUpperCase();
        const body = SAFE_METHODS.has(method) ? undefined : await input.clone().arrayBuffer();
        url = resolve(input.url);
        reqInit = {
          method,
          headers: new Headers(init.headers || input.headers),
          body: init.body !== undefined ? init.body : body,
          signal: init.signal || input.signal,
          redirect: init.redirect || input.redirect,
        };
      } else {
        url = resolve(/** @type {string | URL} */ (input));
      }
      // A stream body can be sent only once: no retry then.
      const retryable = !(typeof ReadableStream !== 'undefined' && reqInit.body instanceof ReadableStream);
      const res = await exchange(url, reqInit, { retryable });
      if (res.status === 401 && url.origin === apiOrigin) {
        const body = await readJson(res.clone());
        unauthenticated(httpError(res, body));
      }
      return res;
    },

    async request(path, { method = 'GET', body, signal } = {}) {
      return call(method.toUpperCase(), path, body, { signal });
    },

    getToken: () => (transport === 'bearer' ? storage.get() : null),
  };
  return client;
}
