// Scenario 5: CSRF. A victim signed in through the trusted SPA; pages on untrusted origins try
// to change state with the victim's cookie, by form post and by fetch. The same-site attacker
// (another localhost port) does get the Lax cookie sent along, so only the server's CSRF check
// stands in the way; the cross-site one (evil.test) is also refused.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';

import { apiToml, launch, openSpa, PASSWORD, startPageServer, startServer, uniqueName } from './support.js';

/** Auto-submits a cross-origin form POST to ?api=…&path=… (what a CSRF page does). */
const FORM_PAGE = `<!doctype html><html><head><meta charset="utf-8"><title>win a prize</title></head><body>
<form id="f" method="POST"><input type="hidden" name="x" value="1"></form>
<script>
const q = new URLSearchParams(location.search);
const f = document.getElementById('f');
f.action = q.get('api') + q.get('path');
f.submit();
</script></body></html>`;

let spa;
let attacker;
let api;
let apiUrl;
let browser;
before(async () => {
  spa = await startPageServer();
  attacker = await startPageServer({ pages: { '/form': FORM_PAGE, '/page': '<!doctype html><title>evil</title><p>evil</p>' } });
  api = await startServer({ toml: apiToml({ spa: [`http://localhost:${spa.port}`] }) });
  apiUrl = `http://localhost:${api.port}`;
  browser = await launch({ hostRules: 'MAP evil.test 127.0.0.1' });
});
after(async () => {
  await browser?.close();
  await api?.stop();
  await spa?.stop();
  await attacker?.stop();
});

/** The victim's view through the trusted SPA: who is signed in, the counter, the tokens. */
async function victimState(page) {
  await openSpa(page, `http://localhost:${spa.port}/`);
  return page.evaluate(async (apiUrl) => {
    const client = window.vestibule.createClient({ baseUrl: apiUrl });
    const me = await client.me();
    const counter = (await client.request('/demo/counter')).counter;
    const tokens = me ? (await client.tokens.list()).length : null;
    return { user: me?.username ?? null, counter, tokens };
  }, apiUrl);
}

test('pages on untrusted origins cannot change state with the victim cookie', async () => {
  const { page } = browser;
  const username = uniqueName('victim');
  await openSpa(page, `http://localhost:${spa.port}/`);
  await page.evaluate(
    async ({ apiUrl, username, password }) => {
      const client = window.vestibule.createClient({ baseUrl: apiUrl });
      await client.signup({ username, password });
      await client.request('/demo/counter', { method: 'POST' });
    },
    { apiUrl, username, password: PASSWORD },
  );
  const before = await victimState(page);
  assert.deepEqual(before, { user: username, counter: 1, tokens: 0 });

  for (const attackerOrigin of [`http://localhost:${attacker.port}`, `http://evil.test:${attacker.port}`]) {
    const sameSite = attackerOrigin.includes('localhost');
    // 1. Form posts (top-level navigations): counter, new token, log out everywhere.
    for (const path of ['/demo/counter', '/auth/tokens', '/auth/logout-all']) {
      const response = page.waitForResponse((r) => r.url() === `${apiUrl}${path}` && r.request().method() === 'POST');
      await page.goto(`${attackerOrigin}/form?api=${encodeURIComponent(apiUrl)}&path=${encodeURIComponent(path)}`);
      const res = await response;
      const sent = await res.request().allHeaders();
      assert.equal(sent.origin, attackerOrigin);
      // Same-site: the Lax cookie goes along with the POST; cross-site: it does not.
      assert.equal(/vestibule_session=/.test(sent.cookie || ''), sameSite, `${attackerOrigin} ${path} cookie`);
      assert.equal(res.status(), 403, `${attackerOrigin} form POST ${path}`);
      const body = JSON.parse((await page.textContent('body')) || '{}');
      assert.equal(body.code, 'csrf_origin_untrusted', `${attackerOrigin} ${path}`);
    }

    // 2. fetch from the attacker's page: a simple no-cors POST (no preflight: sent with the
    // cookie), and a JSON one (preflighted: refused before it is sent).
    await page.goto(`${attackerOrigin}/page`);
    const response = page.waitForResponse((r) => r.url() === `${apiUrl}/demo/counter` && r.request().method() === 'POST');
    const outcome = await page.evaluate(async (apiUrl) => {
      const simple = await fetch(`${apiUrl}/demo/counter`, { method: 'POST', mode: 'no-cors', credentials: 'include' });
      let json;
      try {
        await fetch(`${apiUrl}/auth/logout-all`, {
          method: 'POST',
          credentials: 'include',
          headers: { 'content-type': 'application/json' },
          body: '{}',
        });
        json = 'sent';
      } catch (e) {
        json = e.name;
      }
      return { simpleType: simple.type, json };
    }, apiUrl);
    assert.equal(outcome.simpleType, 'opaque');
    assert.equal(outcome.json, 'TypeError', 'the preflight is refused');
    const simple = await response;
    assert.equal(simple.status(), 403, `${attackerOrigin} no-cors fetch`);
  }

  // Nothing changed: still signed in, counter 1, no token.
  assert.deepEqual(await victimState(page), before);
});
