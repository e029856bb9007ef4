// Types of vestibule-client (hand-written; index.js is the implementation, no build step).
// Answer objects keep the server's JSON field names (snake_case), as documented in the README.

/** How the session travels between the page and the API. */
export type Transport = 'cookie' | 'bearer';

/** Where the bearer token is kept. The default keeps it in memory only. */
export interface TokenStorage {
  get(): string | null;
  set(token: string | null): void;
}

export interface ClientOptions {
  /**
   * The API's origin (and path prefix, if any), e.g. `http://localhost:8000`.
   * Optional in a browser page: defaults to the page's own origin.
   */
  baseUrl?: string;
  /** `'cookie'` (default): HttpOnly session cookie + `X-CSRF-Token`. `'bearer'`: `Authorization: Bearer`, no cookie. */
  transport?: Transport;
  /**
   * Called with the error whenever a call other than login/signup/me/logout answers 401 (after
   * the client forgot the dead credential: the bearer token, or the CSRF token). Route to the
   * login page here. An exception thrown by the hook is reported, never thrown in place of the error.
   */
  onUnauthenticated?: (error: VestibuleError) => void;
  /** Bearer transport only: where the token is kept (default: memory only). */
  storage?: TokenStorage;
  /** The fetch to use (default `globalThis.fetch`): for tests, or to add a cookie jar outside browsers. */
  fetch?: typeof globalThis.fetch;
  /** WebAuthn (passkeys): default `navigator.credentials`; a stand-in for tests. */
  credentials?: Pick<CredentialsContainer, 'create' | 'get'>;
}

/** A second factor that completes a pending login. */
export type MfaMethod = 'totp' | 'webauthn' | 'recovery';

/**
 * What `login` resolves to when the password was right but a second factor is due: call
 * `mfa.totp(code)`, `mfa.recovery(code)` or `mfa.webauthn()` within 5 minutes (until
 * `expires_at`). The pending state grants nothing else.
 */
export interface MfaRequired {
  mfa_required: true;
  methods: MfaMethod[];
  expires_at: string;
}

/** A TOTP enrolment: show `qr_svg` (or `secret`), then confirm with a first code. */
export interface TotpEnrolment {
  secret: string;
  otpauth_uri: string;
  qr_svg: string;
}

export interface PasskeyInfo {
  id: number;
  name: string;
}

/** A passkey just registered: the account's first second factor also brings its recovery codes. */
export interface RegisteredPasskey extends PasskeyInfo {
  /** Ten single-use codes, present only when the account had none (shown this once). */
  recovery_codes?: string[];
}

/** The signed-in user's second factors (`GET /auth/mfa`). */
export interface MfaStatus {
  totp: boolean;
  passkeys: number;
  /** Recovery codes not used yet (0 without a second factor). */
  recovery_codes_left: number;
}

export interface Credentials {
  /** The username; `login` also takes the account's email address here. */
  username: string;
  password: string;
  /** Signup only: the account's address (a verification link is sent to it). */
  email?: string;
}

/** What `signup` resolves with under `auth.require_verified_email`: signed up, not logged in. */
export interface SignupPending {
  email_verification_required: true;
  email: string;
}

export interface OidcProvider {
  /** The name in `/auth/oidc/{name}/start`. */
  name: string;
  /** The button's label. */
  label: string;
}

export interface User {
  id: number;
  username: string;
}

/** A provider identity linked to the signed-in user (`GET /auth/identities`). */
export interface LinkedIdentity {
  /** Its id (for `identities.unlink`). */
  id: number;
  /** The provider's configured name. */
  provider: string;
  issuer: string;
  /** The subject at that issuer. */
  subject: string;
  /** The e-mail address the provider gave at linking, if any. */
  email: string | null;
  /** When it was linked (Unix seconds). */
  created_at: number;
}

export interface SessionInfo {
  id: string;
  created_at: string;
  last_seen: string;
  expires_at: string;
  /** The raw `User-Agent` the session was created with. */
  user_agent: string | null;
  /** A short label parsed from it by the server ("Chrome 156 on Linux"); null when unrecognised. */
  browser: string | null;
  transport: Transport;
  current: boolean;
}

export type Scope = 'read' | 'write';

export interface AccessTokenInfo {
  id: number;
  name: string;
  prefix: string;
  scopes: Scope[];
  created_at: string;
  last_used_at: string | null;
  expires_at: string;
}

/** A freshly created access token: `token` is the secret, shown this once only. */
export interface CreatedAccessToken extends AccessTokenInfo {
  token: string;
}

export interface NewAccessToken {
  name: string;
  expiresInDays?: number;
  scopes?: Scope[];
}

export interface PasswordChange {
  currentPassword: string;
  newPassword: string;
}

/** What a password change ended besides the caller's own session (which moved to a new token). */
export interface EndedCounts {
  /** The user's other sessions; null with the cookie session store, which cannot count them (all ended). */
  sessions: number | null;
  /** Access tokens revoked (0 when the server keeps them: `tokens.revoke_on_password_change = false`). */
  access_tokens: number;
}

/** What `changePassword` resolves with. */
export interface PasswordChanged {
  user: User;
  ended: EndedCounts;
}

/** What `reauth` sends: the password, and at most one second factor. */
export interface ReauthProof {
  password: string;
  /** A current TOTP code. */
  code?: string;
  /** An unused recovery code (spent by this proof). */
  recoveryCode?: string;
  /** Prove one of the user's passkeys (a WebAuthn ceremony in the browser). */
  passkey?: boolean;
}

/** What `reauth` answers. */
export interface ReauthResult {
  auth_time: string;
  reauth_until: string;
  /** Whether the proof included a second factor (needed to manage factors). */
  second_factor: boolean;
}

export interface RequestOptions {
  method?: string;
  /** Sent as JSON. */
  body?: unknown;
  /** Aborts the call (e.g. `AbortSignal.timeout(5000)`); the AbortError is rethrown as is. */
  signal?: AbortSignal;
}

export interface VestibuleClient {
  readonly transport: Transport;
  /** The resolved API base, without a trailing slash. */
  readonly baseUrl: string;
  signup(credentials: Credentials): Promise<User | SignupPending>;
  /** Password recovery by email. */
  password: {
    /** Asks for a recovery link for a username or address (resolves the same whether or not it exists). */
    forgot(login: string): Promise<void>;
    /** Sets a new password with the token of a recovery link; every session ends: log in again. */
    reset(reset: {
      token: string;
      newPassword: string;
      /** On an account with a second factor: a current TOTP code… */
      code?: string;
      /** …or one of its recovery codes. */
      recoveryCode?: string;
    }): Promise<void>;
  };
  /** Address verification. */
  email: {
    /** Verifies the address with the token of the link sent to it. */
    verify(token: string): Promise<{ email: string }>;
    /** Sends a new verification link (resolves the same whether or not the account exists). */
    resend(login: string): Promise<void>;
    /**
     * Asks to change the account's address (needs a recent password: `reauth`); it takes effect
     * when the link sent to the new address is followed, and the old address is told.
     */
    change(email: string): Promise<{ pendingEmail: string }>;
    /**
     * The signed-in account's address: whether it is verified (show "verify your address" with
     * `resend` when not), and an address change waiting for its link.
     */
    status(): Promise<{ email: string | null; verified: boolean; pendingEmail: string | null }>;
  };
  /** The user, or `MfaRequired` when the account has a second factor (not an error). */
  login(credentials: Credentials): Promise<User | MfaRequired>;
  /** Ends the session server-side; resolves even when it had already ended. */
  logout(): Promise<void>;
  /**
   * Calls `listener` with the user (or null) whenever the client learns who is signed in:
   * login, signup, a completed second factor or passkey login, me(), logout, logoutAll, and any
   * 401 that ends the session. Returns the function that removes the listener.
   * (`vestibule-client/react`'s `useSession` is built on it.)
   */
  onSessionChange(listener: (user: User | null) => void): () => void;
  /** The signed-in user, or null when nobody is (does not fire onUnauthenticated). */
  me(): Promise<User | null>;
  /** Changes the password: this session moves to a new token, the others end; says how many ended. */
  changePassword(change: PasswordChange): Promise<PasswordChanged>;
  /** Cookie transport: fetches the current CSRF token (null: no session, none needed). */
  refreshCsrf(): Promise<string | null>;
  /**
   * Proves the password again (`POST /auth/reauth`) before a sensitive action. On an account with
   * a second factor, adding or removing factors and regenerating recovery codes also need one
   * factor in the same proof (else `mfa_reauth_required`): a TOTP `code`, a `recoveryCode`
   * (spent), or `passkey: true` (asks the browser for one of the user's passkeys).
   */
  reauth(proof: ReauthProof): Promise<ReauthResult>;
  mfa: {
    /** Completes a login that answered `MfaRequired` with a TOTP code; resolves with the user. */
    totp(code: string): Promise<User>;
    /** Completes a login that answered `MfaRequired` with a recovery code (each works once). */
    recovery(code: string): Promise<User>;
    /** Completes a login that answered `MfaRequired`: asks the browser for one of the user's passkeys. */
    webauthn(): Promise<User>;
    /** The signed-in user's second factors and how many recovery codes are left. */
    status(): Promise<MfaStatus>;
    /**
     * Replaces every recovery code with 10 new ones (shown once; the old ones stop working).
     * Needs a second factor (else `mfa_factor_required`) and a recent `reauth` that proved one
     * (else `reauth_required` / `mfa_reauth_required`).
     */
    regenerateRecoveryCodes(): Promise<string[]>;
  };
  /** The signed-in user's TOTP authenticator. */
  totp: {
    enroll(): Promise<TotpEnrolment>;
    /** Turns TOTP on with a first code; resolves with the 10 recovery codes (shown once). */
    confirm(code: string): Promise<string[]>;
    remove(): Promise<void>;
  };
  passkeys: {
    list(): Promise<PasskeyInfo[]>;
    remove(id: number | string): Promise<void>;
    /**
     * Creates a passkey for the signed-in user (discoverable: it also logs in without a password).
     * A first second factor also resolves with the account's `recovery_codes` (shown once).
     */
    register(options?: { name?: string }): Promise<RegisteredPasskey>;
    /** Passwordless login with a passkey the browser offers (cookie transport). */
    login(): Promise<User>;
  };
  /** Sign-in through the OpenID Connect providers configured on the server (`[[oidc.provider]]`). */
  oidc: {
    /** The configured providers, for "Sign in with …" buttons. */
    providers(): Promise<OidcProvider[]>;
    /** The URL that starts a login through `provider` and comes back to `returnTo` (default: this page). */
    loginUrl(provider: string, options?: { returnTo?: string }): string;
    /**
     * Navigates the page to the provider. Back at `returnTo`, the query holds `oidc_error=<code>`
     * on a refusal, or `mfa_required=1` when a second factor is due.
     */
    login(provider: string, options?: { returnTo?: string }): void;
    /**
     * Links an identity at `provider` to the signed-in user (needs a recent `reauth`; on an
     * account with a second factor, one proved in it). Resolves with the provider's URL, where a
     * page is sent unless `navigate: false`. Back at `returnTo` (default: this page), the query
     * holds `oidc_linked=<provider>`, or `oidc_error=<code>` (`oidc_identity_taken`: the identity
     * belongs to another account).
     */
    link(provider: string, options?: { returnTo?: string; navigate?: boolean }): Promise<string>;
  };
  /** The signed-in user's linked provider identities. */
  identities: {
    list(): Promise<LinkedIdentity[]>;
    /** Needs a recent `reauth`; refused (`oidc_last_login`) for the account's last way in. */
    unlink(id: number | string): Promise<void>;
  };
  sessions: {
    list(): Promise<SessionInfo[]>;
    revoke(id: string): Promise<void>;
    logoutAll(): Promise<void>;
  };
  tokens: {
    create(token: NewAccessToken): Promise<CreatedAccessToken>;
    list(): Promise<AccessTokenInfo[]>;
    revoke(id: number | string): Promise<void>;
  };
  /**
   * `fetch` for the app's own API on the same server, with the same rules (credentials, CSRF
   * header and one retry, bearer header, onUnauthenticated on 401). Resolves with the Response
   * whatever its status, like fetch; rejects with a VestibuleError when no answer arrived.
   * Credentials go only to the API's origin, never to other URLs.
   */
  fetch(input: string | URL | Request, init?: RequestInit): Promise<Response>;
  /** A JSON call to the API: the parsed answer (null for 204), or a thrown VestibuleError. */
  request<T = unknown>(path: string, options?: RequestOptions): Promise<T>;
  /** Bearer transport: the token held (null if none); cookie transport: always null. */
  getToken(): string | null;
}

export declare class VestibuleError extends Error {
  constructor(fields: { status: number; code: string; message: string; hint?: string | null; cause?: unknown });
  /** Always 'VestibuleError'. */
  name: string;
  /** HTTP status; 0 when no answer could be read (network or CORS). */
  status: number;
  /** Stable code: the server's (`not_authenticated`, `csrf_token_mismatch`, …), or `network_error`, `cors_error`, `http_error`. */
  code: string;
  /** What to do about it; '' when nothing is known. */
  hint: string;
}

export declare function createClient(options?: ClientOptions): VestibuleClient;
export declare function memoryStorage(): TokenStorage;
/** Opt-in sessionStorage: survives a reload, but any script on the page (XSS) can read it. */
export declare function sessionStorageAdapter(key?: string, store?: Storage): TokenStorage;
