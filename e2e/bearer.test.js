// Scenario 4: the bearer transport cross-origin (SPA and API on different ports): the client
// holds the token in memory and sends Authorization; the browser never stores or sends a cookie.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';

import { apiToml, launch, openSpa, PASSWORD, startPageServer, startServer, uniqueName } from './support.js';

let spa;
let api;
let browser;
before(async () => {
  spa = await startPageServer();
  api = await startServer({ toml: apiToml({ spa: [`http://localhost:${spa.port}`] }) });
  browser = await launch();
});
after(async () => {
  await browser?.close();
  await api?.stop();
  await spa?.stop();
});

test('bearer transport works cross-origin with no cookie at all', async () => {
  const { page, context } = browser;
  const apiUrl = `http://localhost:${api.port}`;
  await openSpa(page, `http://localhost:${spa.port}/`);
  const username = uniqueName('bearer');
  const result = await page.evaluate(
    async ({ apiUrl, username, password }) => {
      const unauthenticated = [];
      const client = window.vestibule.createClient({
        baseUrl: apiUrl,
        transport: 'bearer',
        onUnauthenticated: (e) => unauthenticated.push(e.code),
      });
      const user = await client.signup({ username, password });
      const token = client.getToken();
      const me = await client.me();
      const created = await client.tokens.create({ name: 'bearer-made', scopes: ['read'] });
      const sessions = await client.sessions.list();
      const debug = await (await client.fetch('/auth/_debug')).json();
      await client.logout();
      const afterLogout = { token: client.getToken(), me: await client.me() };
      // The old token is dead server-side.
      const reused = await fetch(`${apiUrl}/auth/me`, { headers: { Authorization: `Bearer ${token}` } });
      return {
        user,
        tokenPrefix: token?.slice(0, 4),
        me,
        pat: created.token.slice(0, 5),
        sessions: sessions.map((s) => s.transport),
        debug,
        afterLogout,
        reusedStatus: reused.status,
        unauthenticated,
        documentCookie: document.cookie,
      };
    },
    { apiUrl, username, password: PASSWORD },
  );
  assert.equal(result.user.username, username);
  assert.equal(result.tokenPrefix, 'vst_');
  assert.equal(result.me?.username, username);
  assert.equal(result.pat, 'vpat_');
  assert.deepEqual(result.sessions, ['bearer']);
  assert.equal(result.debug.request.authorization.present, true);
  assert.equal(result.debug.request.authorization.scheme, 'Bearer');
  assert.deepEqual(result.debug.request.cookie_names, []);
  assert.equal(result.debug.request.origin, `http://localhost:${spa.port}`);
  assert.deepEqual(result.afterLogout, { token: null, me: null });
  assert.equal(result.reusedStatus, 401);
  assert.deepEqual(result.unauthenticated, []);
  assert.equal(result.documentCookie, '');
  assert.deepEqual(await context.cookies(), [], 'no cookie in the whole profile');
});
