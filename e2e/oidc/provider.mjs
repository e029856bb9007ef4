// A real, OpenID Certified provider (`oidc-provider` from npm) on loopback, for the tests of
// Vestibule as a relying party (crates/vestibule/tests/it/oidc.rs and the browser test).
//
//   node e2e/oidc/provider.mjs '{"redirect_uris": ["http://127.0.0.1:1234/auth/oidc/test/callback"]}'
//
// Prints one JSON line once it listens: {"issuer", "client_id", "client_secret", "other_client_id",
// "other_client_secret", "post_client_id", "post_client_secret", "jwt_client_id"}. Confidential
// clients: `vestibule` (the one under test, client_secret_basic), `other` (whose codes must not
// work for `vestibule`: code injection), `vestibule-post` (client_secret_post) and, with
// `jwt_client_keys`, `vestibule-jwt` (private_key_jwt). The vestibule* clients share
// redirect_uris.
//
// Its login page is a one-field form (any username logs in as that account: this is a test
// provider); consent is granted automatically. Options (the JSON argument):
//   redirect_uris         the callback URLs of `vestibule`
//   access_token_ttl      seconds an access token lives (default 60)
//   backchannel_logout_uri  where to send logout tokens for `vestibule` (its ID tokens then
//                         carry `sid`); a logout at /session/end sends them
//   post_logout_redirect_uris  where /session/end may send the browser back to
//   port                  the port to listen on (default: one the OS picks), for a relying
//                         party whose configuration must name the issuer before it starts
//   conform_id_token_claims true: the scopes' claims only at userinfo, not in the ID token
//                         (Core 5.4, as many providers do; default false)
//   refresh_token_ttl     seconds a refresh token lives (default 3600)
//   jwt_client_keys       the public keys of `vestibule-jwt`: [{"pem": "-----BEGIN PUBLIC KEY-----…",
//                         "kid": "k1"}] (kid optional), registered as its jwks
//
// GET /_test/refreshes answers {"refreshes", "refresh_errors"}: the refresh_token grants served
// and refused so far (the test of one refresh across Vestibule instances counts them).
// GET /_test/revocations answers {"requests": [...]}: every revocation request (RFC 7009) so
// far, with the same fields and token_type_hint in place of grant_type.
// GET /_test/token_auth answers {"requests": [...]}: every token endpoint request so far, in
// order, as {grant_type, client_id, method, status, error, and for private_key_jwt: alg, kid,
// jti, iss, sub, aud, iat, exp} (method: how the client authenticated, read from the request).
import http from 'node:http';
import { createPublicKey } from 'node:crypto';
import { once } from 'node:events';
import Provider from 'oidc-provider';

const options = JSON.parse(process.argv[2] || '{}');
// The test reads the first line and may close the pipe: later writes must not crash the provider.
process.stdout.on('error', () => {});
const server = http.createServer();
server.listen(options.port || 0, '127.0.0.1');
await once(server, 'listening');
const { port } = server.address();
const issuer = `http://127.0.0.1:${port}`;

const CLIENT = { id: 'vestibule', secret: 'vestibule-test-secret-0123456789abcdef' };
const OTHER = { id: 'other', secret: 'other-test-secret-0123456789abcdefgh' };
const POST = { id: 'vestibule-post', secret: 'vestibule-post-test-secret-0123456789ab' };
const JWT = { id: 'vestibule-jwt' };

// `vestibule-jwt`'s keys: the public PEMs given, as a JWKS.
const jwtKeys = (options.jwt_client_keys || []).map(({ pem, kid }) => ({
  ...createPublicKey(pem).export({ format: 'jwk' }),
  ...(kid ? { kid } : {}),
  use: 'sig',
}));
const relyingParty = {
  redirect_uris: options.redirect_uris || [],
  grant_types: ['authorization_code', 'refresh_token'],
  response_types: ['code'],
};

const accounts = new Map();
const provider = new Provider(issuer, {
  clients: [
    {
      client_id: CLIENT.id,
      client_secret: CLIENT.secret,
      redirect_uris: options.redirect_uris || [],
      post_logout_redirect_uris: options.post_logout_redirect_uris || [],
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      token_endpoint_auth_method: 'client_secret_basic',
      ...(options.backchannel_logout_uri
        ? { backchannel_logout_uri: options.backchannel_logout_uri, backchannel_logout_session_required: true }
        : {}),
    },
    { client_id: POST.id, client_secret: POST.secret, ...relyingParty, token_endpoint_auth_method: 'client_secret_post' },
    ...(jwtKeys.length
      ? [{ client_id: JWT.id, ...relyingParty, token_endpoint_auth_method: 'private_key_jwt', jwks: { keys: jwtKeys } }]
      : []),
    {
      client_id: OTHER.id,
      client_secret: OTHER.secret,
      redirect_uris: ['http://127.0.0.1:9/other/callback'],
      grant_types: ['authorization_code'],
      response_types: ['code'],
      token_endpoint_auth_method: 'client_secret_basic',
    },
  ],
  async findAccount(_ctx, id) {
    const account = accounts.get(id) || { mfa: false };
    return {
      accountId: id,
      async claims() {
        return {
          sub: id,
          preferred_username: id,
          name: id,
          email: `${id}@example.test`,
          email_verified: true,
        };
      },
      mfa: account.mfa,
    };
  },
  claims: {
    // `amr` with the openid scope: in the ID token, as most providers send it (the login below
    // says ['pwd'], or ['pwd', 'otp', 'mfa'] with the second-factor box ticked).
    openid: ['sub', 'amr'],
    profile: ['preferred_username', 'name'],
    email: ['email', 'email_verified'],
  },
  features: {
    devInteractions: { enabled: false },
    backchannelLogout: { enabled: true },
    rpInitiatedLogout: { enabled: true },
    // RFC 7009 token revocation (`revocation_endpoint`), which Vestibule calls at logout.
    revocation: { enabled: true },
  },
  // The scopes' claims go into the ID token too (Vestibule reads the ID token, not userinfo).
  conformIdTokenClaims: options.conform_id_token_claims === true,
  pkce: { required: () => true },
  ttl: {
    AccessToken: options.access_token_ttl || 60,
    AuthorizationCode: 60,
    IdToken: 300,
    Interaction: 600,
    Session: 3600,
    Grant: 3600,
    RefreshToken: options.refresh_token_ttl || 3600,
  },
  issueRefreshToken: async () => true,
  // Every refresh hands out a new refresh token and uses up the old one (what OAuth 2.0 Security
  // BCP 4.14 asks of providers and many do): a second refresh with a used-up token is refused
  // and revokes the grant, so a relying party that refreshes twice loses the login.
  rotateRefreshToken: true,
  interactions: { url: (_ctx, interaction) => `/interaction/${interaction.uid}` },
  // Consent is granted automatically (a test provider): every scope and claim asked for.
  async loadExistingGrant(ctx) {
    const grantId =
      ctx.oidc.result?.consent?.grantId || ctx.oidc.session.grantIdFor(ctx.oidc.client.clientId);
    if (grantId) {
      const found = await ctx.oidc.provider.Grant.find(grantId);
      if (found) return found;
    }
    const grant = new ctx.oidc.provider.Grant({
      clientId: ctx.oidc.client.clientId,
      accountId: ctx.oidc.session.accountId,
    });
    grant.addOIDCScope('openid profile email offline_access');
    grant.addOIDCClaims(['preferred_username', 'name', 'email', 'email_verified']);
    await grant.save();
    return grant;
  },
  cookies: { keys: ['vestibule-test-provider-cookie-key'] },
  // The provider's outgoing requests (back-channel logout) go to the relying party on loopback,
  // which oidc-provider's SSRF guard refuses by default: a test provider lifts it.
  fetch(url, options) {
    const { dispatcher: _guard, ...rest } = options;
    return globalThis.fetch(url, rest);
  },
});

let refreshes = 0;
let refreshErrors = 0;
provider.on('grant.success', (ctx) => {
  if (ctx.oidc?.params?.grant_type === 'refresh_token') refreshes += 1;
});
provider.on('grant.error', (ctx) => {
  if (ctx.oidc?.params?.grant_type === 'refresh_token') refreshErrors += 1;
});

// Every token endpoint request: which client, how it authenticated, what it got.
const tokenRequests = [];
function segment(jwt, i) {
  try {
    return JSON.parse(Buffer.from(jwt.split('.')[i], 'base64url').toString('utf8'));
  } catch {
    return {};
  }
}
// Every revocation request: the same fields, with token_type_hint in place of grant_type.
const revocations = [];
provider.use(async (ctx, next) => {
  await next();
  if (ctx.method !== 'POST' || (ctx.path !== '/token' && ctx.path !== '/token/revocation')) return;
  const params = ctx.oidc?.params || {};
  const authorization = ctx.headers.authorization || '';
  const entry =
    ctx.path === '/token'
      ? { grant_type: params.grant_type, status: ctx.status, error: ctx.body?.error }
      : { token_type_hint: params.token_type_hint, status: ctx.status, error: ctx.body?.error };
  if (authorization.toLowerCase().startsWith('basic ')) {
    entry.method = 'client_secret_basic';
    entry.client_id = decodeURIComponent(Buffer.from(authorization.slice(6), 'base64').toString().split(':')[0]);
  } else if (params.client_assertion) {
    const header = segment(params.client_assertion, 0);
    const payload = segment(params.client_assertion, 1);
    Object.assign(entry, {
      method: 'private_key_jwt',
      client_id: params.client_id || payload.sub,
      alg: header.alg,
      kid: header.kid,
      jti: payload.jti,
      iss: payload.iss,
      sub: payload.sub,
      aud: payload.aud,
      iat: payload.iat,
      exp: payload.exp,
    });
  } else if (params.client_secret) {
    entry.method = 'client_secret_post';
    entry.client_id = params.client_id;
  } else {
    entry.method = 'none';
    entry.client_id = params.client_id;
  }
  (ctx.path === '/token' ? tokenRequests : revocations).push(entry);
});

function page(res, status, html) {
  res.writeHead(status, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' });
  res.end(`<!doctype html><html><head><title>Test IdP</title></head><body>${html}</body></html>`);
}

async function body(req) {
  let data = '';
  for await (const chunk of req) data += chunk;
  return new URLSearchParams(data);
}

// Back-channel logout calls that the relying party refused, on stderr (the tests' diagnosis).
provider.on('backchannel.error', (_ctx, err, client) => {
  process.stderr.write(`backchannel logout to ${client.clientId} failed: ${err && err.message} ${err && err.cause ? String(err.cause) : ""}\n`);
});

const handler = provider.callback();
server.on('request', async (req, res) => {
  try {
    if (req.url === '/_test/token_auth') {
      res.writeHead(200, { 'content-type': 'application/json' });
      return res.end(JSON.stringify({ requests: tokenRequests }));
    }
    if (req.url === '/_test/revocations') {
      res.writeHead(200, { 'content-type': 'application/json' });
      return res.end(JSON.stringify({ requests: revocations }));
    }
    if (req.url === '/_test/refreshes') {
      res.writeHead(200, { 'content-type': 'application/json' });
      return res.end(JSON.stringify({ refreshes, refresh_errors: refreshErrors }));
    }
    const m = /^\/interaction\/([^/?]+)(\/login)?/.exec(req.url);
    if (!m) return handler(req, res);
    const details = await provider.interactionDetails(req, res);
    if (req.method === 'GET' && !m[2]) {
      return page(
        res,
        200,
        `<h1>Test IdP</h1><form method="post" action="/interaction/${details.uid}/login">` +
          `<label>Username <input name="login" autofocus></label>` +
          `<label><input type="checkbox" name="mfa" value="1"> with a second factor</label>` +
          `<button type="submit">Sign in</button></form>`,
      );
    }
    if (req.method === 'POST' && m[2]) {
      const form = await body(req);
      const login = (form.get('login') || '').trim();
      if (!login) return page(res, 400, 'username required');
      const mfa = form.get('mfa') === '1';
      accounts.set(login, { mfa });
      return provider.interactionFinished(
        req,
        res,
        { login: { accountId: login, amr: mfa ? ['pwd', 'otp', 'mfa'] : ['pwd'] } },
        { mergeWithLastSubmission: false },
      );
    }
    return page(res, 405, 'method not allowed');
  } catch (e) {
    page(res, 500, String(e && e.message));
  }
});

process.stdout.write(
  `${JSON.stringify({
    issuer,
    client_id: CLIENT.id,
    client_secret: CLIENT.secret,
    other_client_id: OTHER.id,
    other_client_secret: OTHER.secret,
    post_client_id: POST.id,
    post_client_secret: POST.secret,
    jwt_client_id: jwtKeys.length ? JWT.id : null,
  })}\n`,
);
process.on('SIGTERM', () => process.exit(0));
