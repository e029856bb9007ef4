// Scenario 3: same-site subdomains. SPA at http://www.acme.test:<spa>, API at
// http://api.acme.test:<api>, both mapped to 127.0.0.1 by Chromium's --host-resolver-rules.
// The derived cookie (host-only, Lax, no Secure on plain http) works through the client; with
// session.cookie_domain = "acme.test" the www host receives it too.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';

import { apiToml, launch, openSpa, PASSWORD, startPageServer, startServer, uniqueName } from './support.js';

/** The session cookie among a profile's cookies (the device cookie rides along). */
const sessionOnly = (cookies) => cookies.filter((c) => c.name === 'vestibule_session');

let spa;
let spaOrigin;
let browser;
const apis = [];
before(async () => {
  spa = await startPageServer();
  spaOrigin = `http://www.acme.test:${spa.port}`;
  browser = await launch({ hostRules: 'MAP *.acme.test 127.0.0.1' });
});
after(async () => {
  await browser?.close();
  for (const api of apis) await api.stop();
  await spa?.stop();
});

async function apiAt(extra = '') {
  const api = await startServer({ toml: apiToml({ host: 'api.acme.test', spa: [spaOrigin], extra }) });
  apis.push(api);
  return { api, apiUrl: `http://api.acme.test:${api.port}` };
}

/** Signs up through the client on the www page; returns what the API's _debug saw afterwards. */
async function signUpFromWww(page, apiUrl) {
  await openSpa(page, `${spaOrigin}/`);
  const username = uniqueName('sub');
  const result = await page.evaluate(
    async ({ apiUrl, username, password }) => {
      const client = window.vestibule.createClient({ baseUrl: apiUrl });
      await client.signup({ username, password });
      const me = await client.me();
      const created = await client.tokens.create({ name: 'sub' });
      const debug = await (await client.fetch('/auth/_debug')).json();
      return { me: me?.username, token: created.name, debug };
    },
    { apiUrl, username, password: PASSWORD },
  );
  assert.equal(result.me, username);
  assert.equal(result.token, 'sub');
  assert.equal(result.debug.request.origin, spaOrigin);
  assert.equal(result.debug.request.session_cookie_received, true);
  assert.equal(result.debug.verdict.relation, 'same-site');
  assert.equal(result.debug.policy.api_site, 'http://acme.test');
  return result.debug;
}

/** Reloads the www page; returns the cookie names its server received. */
async function cookiesSeenByWww(page) {
  spa.requests.length = 0;
  await openSpa(page, `${spaOrigin}/`);
  return spa.requests.find((r) => r.path === '/')?.cookieNames ?? [];
}

test('www → api with the derived host-only cookie', async () => {
  const { apiUrl } = await apiAt();
  const debug = await signUpFromWww(browser.page, apiUrl);
  assert.equal(debug.policy.cookie.domain, null);
  assert.equal(debug.policy.cookie.secure, false, 'plain http on a non-loopback host cannot use Secure');
  const cookies = await browser.context.cookies(apiUrl);
  assert.deepEqual(sessionOnly(cookies).map((c) => [c.name, c.domain, c.sameSite, c.secure]), [['vestibule_session', 'api.acme.test', 'Lax', false]]);
  assert.deepEqual(await cookiesSeenByWww(browser.page), [], 'host-only cookies stay with the API');
  await browser.context.clearCookies();
});

test('with session.cookie_domain = "acme.test" the www host receives the cookie too', async () => {
  const { apiUrl } = await apiAt('[session]\ncookie_domain = "acme.test"');
  const debug = await signUpFromWww(browser.page, apiUrl);
  assert.equal(debug.policy.cookie.domain, 'acme.test');
  const cookies = await browser.context.cookies(apiUrl);
  assert.deepEqual(sessionOnly(cookies).map((c) => [c.name, c.domain]), [['vestibule_session', '.acme.test']]);
  // The login rate limit's device cookie shares the session cookie's Domain.
  assert.deepEqual((await cookiesSeenByWww(browser.page)).sort(), ['vestibule_device', 'vestibule_session']);
  await browser.context.clearCookies();
});

// Rule 13 (docs/browser-cookie-rules.md): on a plain-http name that is not loopback, Chromium
// ignores Clear-Site-Data and loses the same answer's Max-Age=0 deletion with it. The server
// sends Clear-Site-Data only on a secure context, so logout really removes the cookie here.
test('logout removes the session cookie on a plain-http non-localhost API', async () => {
  const { apiUrl } = await apiAt();
  await signUpFromWww(browser.page, apiUrl);
  assert.equal(sessionOnly(await browser.context.cookies(apiUrl)).length, 1);
  const answer = await browser.page.evaluate(async (apiUrl) => {
    const client = window.vestibule.createClient({ baseUrl: apiUrl });
    await client.me();
    await client.logout();
    return { me: await client.me() };
  }, apiUrl);
  assert.equal(answer.me, null, 'the session ended server-side');
  assert.deepEqual(sessionOnly(await browser.context.cookies(apiUrl)), [], 'and the browser deleted the cookie');
  await browser.context.clearCookies();
});
