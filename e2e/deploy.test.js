// The production recipe in deploy/, run as shipped: deploy/vestibule.toml behind Debian's nginx
// (deploy/nginx/vestibule.conf) and Caddy (deploy/caddy/Caddyfile), with a certificate made here.
// The test changes only names, ports and paths in those files (each replacement must apply, so a
// recipe cannot drift away from what is tested) and then checks, through the TLS proxy, in
// Chromium and with raw requests: the page, login and its __Host- cookie, the identity reaching
// the API, CSRF (token and origin), the client address the rate limits see (a client-sent
// X-Forwarded-For / Forwarded earns no fresh budget), the HTTP → HTTPS redirect and a WebSocket
// through both proxies. The systemd unit is checked with `systemd-analyze verify`.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { copyFileSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { connect } from 'node:net';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

import { BIN } from '../clients/js/test/support.js';
import { artifact, childEnv, freePort, launch, PASSWORD, startProcess, tempDir } from './support.js';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const HOST = 'app.example.test';
const USER = 'amy';
/** The per-address login budget for this test (the recipe keeps the default rate limits on). */
const LOGIN_PER_IP = 5;

const tools = { nginx: '/usr/sbin/nginx', caddy: '/usr/bin/caddy', 'systemd-analyze': '/usr/bin/systemd-analyze' };
/** A missing tool skips its test, except under CI (.ci/run installs them). */
function missing(tool) {
  if (existsSync(tools[tool])) return false;
  if (process.env.CI) throw new Error(`${tools[tool]} is missing and CI is set: .ci/run installs it`);
  return `${tools[tool]} is missing (apt-get install ${tool === 'nginx' ? 'nginx-light' : tool === 'caddy' ? 'caddy' : 'systemd'})`;
}

/** A recipe file's text with each `[from, to]` applied; every `from` must be in the file. */
function recipe(path, replacements) {
  let text = readFileSync(join(root, path), 'utf8');
  for (const [from, to] of replacements) {
    assert.ok(text.includes(from), `${path} no longer contains ${JSON.stringify(from)}: update this test with the recipe`);
    text = text.split(from).join(to);
  }
  return text;
}


async function listening(port) {
  return new Promise((ok) => {
    const s = connect(port, '127.0.0.1');
    s.on('connect', () => {
      s.destroy();
      ok(true);
    });
    s.on('error', () => ok(false));
  });
}

/**
 * The API behind the gateway: answers every request with what it received (method, path, the
 * identity and forwarding headers) and echoes WebSocket text frames. Minimal RFC 6455 by hand:
 * short unfragmented text frames are all the test sends.
 */
async function startEchoApi() {
  /** @type {{method: string, url: string, user: string | null, xff: string | null}[]} */
  const seen = [];
  const server = createServer((req, res) => {
    const entry = {
      method: req.method || '',
      url: req.url || '',
      user: /** @type {string | null} */ (req.headers['x-vestibule-user-id'] ?? null),
      xff: /** @type {string | null} */ (req.headers['x-forwarded-for'] ?? null),
      proto: req.headers['x-forwarded-proto'] ?? null,
      assertion: Boolean(req.headers['x-vestibule-assertion']),
    };
    seen.push(entry);
    req.resume();
    req.on('end', () => {
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify(entry));
    });
  });
  server.on('upgrade', (req, socket) => {
    seen.push({ method: 'UPGRADE', url: req.url || '', user: /** @type {any} */ (req.headers['x-vestibule-user-id'] ?? null), xff: null });
    const accept = createHash('sha1')
      .update(`${req.headers['sec-websocket-key']}258EAFA5-E914-47DA-95CA-C5AB0DC85B11`)
      .digest('base64');
    socket.write(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${accept}\r\n\r\n`);
    socket.on('data', (/** @type {Buffer} */ frame) => {
      const opcode = frame[0] & 0x0f;
      const len = frame[1] & 0x7f; // < 126: the test's messages are short
      const mask = frame.subarray(2, 6);
      const payload = Buffer.from(frame.subarray(6, 6 + len).map((b, i) => b ^ mask[i % 4]));
      if (opcode === 0x8) {
        socket.end(Buffer.from([0x88, 0]));
        return;
      }
      socket.write(Buffer.concat([Buffer.from([0x81, payload.length]), payload]));
    });
    socket.on('error', () => {});
  });
  const port = await freePort();
  await new Promise((ok) => server.listen(port, '127.0.0.1', () => ok(undefined)));
  return { url: `http://127.0.0.1:${port}`, seen, stop: () => new Promise((ok) => server.close(() => ok(undefined))) };
}

/** A raw HTTPS request to the proxy (trusting the test's certificate), any headers allowed. */
function https(port, ca, { method = 'GET', path = '/', headers = {}, body = '' }) {
  return new Promise((ok, fail) => {
    const req = httpsRequest(
      { host: '127.0.0.1', port, servername: HOST, ca, method, path, headers: { host: `${HOST}:${port}`, ...headers } },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (c) => (text += c));
        res.on('end', () => ok({ status: res.statusCode, headers: res.headers, text }));
      },
    );
    req.on('error', fail);
    req.setTimeout(10_000, () => req.destroy(new Error('timed out')));
    req.end(body);
  });
}

/** The deployment: the echo API, Vestibule with deploy/vestibule.toml, and one of the proxies. */
async function deploy(proxy) {
  const dir = tempDir(`vestibule-deploy-${proxy}-`);
  const cert = join(dir, 'cert.pem');
  const key = join(dir, 'key.pem');
  const made = spawnSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1',
    '-nodes', '-keyout', key, '-out', cert, '-days', '2', '-subj', `/CN=${HOST}`, '-addext', `subjectAltName=DNS:${HOST}`],
  { encoding: 'utf8' });
  assert.equal(made.status, 0, made.stderr);
  const site = join(dir, 'dist');
  mkdirSync(site);
  writeFileSync(join(site, 'index.html'), '<!doctype html><title>app</title><p id="page">deployed</p>\n');

  const api = await startEchoApi();
  const [vestibulePort, httpsPort, httpPort] = [await freePort(), await freePort(), await freePort()];
  const publicUrl = `https://${HOST}:${httpsPort}`;
  const config = join(dir, 'vestibule.toml');
  writeFileSync(config, recipe('deploy/vestibule.toml', [
    ['listen = "127.0.0.1:8000"', `listen = "127.0.0.1:${vestibulePort}"`],
    ['https://app.example.com', publicUrl],
    ['/var/lib/vestibule/vestibule.db', join(dir, 'vestibule.db')],
    ['/srv/app/dist', site],
    ['http://127.0.0.1:9000', api.url],
  ]));
  // The test's client logs in from 127.0.0.1 like everyone else: every limit is lifted except
  // the per-address login budget, which is what this test is about (made small to run fast).
  const env = childEnv({
    VESTIBULE_SECRET_KEY: randomBytes(32).toString('base64'),
    VESTIBULE_RATE_LIMITS__LOGIN_PER_IP: `${LOGIN_PER_IP}/h`,
  });
  const added = spawnSync(BIN, ['user', 'add', USER, '--config', config, '--password-stdin'], {
    input: `${PASSWORD}\n`, encoding: 'utf8', env, cwd: dir,
  });
  assert.equal(added.status, 0, added.stderr);
  const vestibule = await startProcess({
    cmd: BIN, args: ['serve', '--config', config], cwd: dir, dir, name: 'vestibule', env,
    ready: () => listening(vestibulePort),
  });

  let front;
  if (proxy === 'nginx') {
    const conf = recipe('deploy/nginx/vestibule.conf', [
      ['server 127.0.0.1:8000;', `server 127.0.0.1:${vestibulePort};`],
      ['    listen 80;\n    listen [::]:80;\n', `    listen 127.0.0.1:${httpPort};\n`],
      ['    listen 443 ssl http2;\n    listen [::]:443 ssl http2;\n', `    listen 127.0.0.1:${httpsPort} ssl http2;\n`],
      ['/etc/letsencrypt/live/app.example.com/fullchain.pem', cert],
      ['/etc/letsencrypt/live/app.example.com/privkey.pem', key],
      ['server_name app.example.com;', `server_name ${HOST};`],
    ]);
    writeFileSync(join(dir, 'vestibule.conf'), conf);
    for (const t of ['body', 'proxy', 'fastcgi', 'uwsgi', 'scgi']) mkdirSync(join(dir, `tmp-${t}`));
    // What Debian's /etc/nginx/nginx.conf provides around conf.d/, pointed at the test's folder.
    writeFileSync(join(dir, 'nginx.conf'), `${process.getuid?.() === 0 ? 'user root;\n' : ''}worker_processes 1;
daemon off;
pid ${dir}/nginx.pid;
error_log ${dir}/nginx-error.log warn;
events { worker_connections 256; }
http {
  access_log off;
  client_body_temp_path ${dir}/tmp-body;
  proxy_temp_path ${dir}/tmp-proxy;
  fastcgi_temp_path ${dir}/tmp-fastcgi;
  uwsgi_temp_path ${dir}/tmp-uwsgi;
  scgi_temp_path ${dir}/tmp-scgi;
  include ${dir}/vestibule.conf;
}
`);
    front = await startProcess({
      cmd: tools.nginx, args: ['-p', dir, '-c', join(dir, 'nginx.conf')], cwd: dir, dir, name: 'nginx',
      env: childEnv(), ready: () => listening(httpsPort),
    });
  } else {
    const caddyfile = recipe('deploy/caddy/Caddyfile', [
      ['app.example.com {', `${HOST}:${httpsPort} {\n\ttls ${cert} ${key}`],
      ['reverse_proxy 127.0.0.1:8000', `reverse_proxy 127.0.0.1:${vestibulePort}`],
    ]);
    // Global options the test needs (no admin endpoint, its own ports); the recipe has none.
    writeFileSync(join(dir, 'Caddyfile'), `{\n\tadmin off\n\thttp_port ${httpPort}\n\thttps_port ${httpsPort}\n}\n\n${caddyfile}`);
    front = await startProcess({
      cmd: tools.caddy, args: ['run', '--config', join(dir, 'Caddyfile'), '--adapter', 'caddyfile'], cwd: dir, dir, name: 'caddy',
      env: childEnv({ HOME: dir, XDG_DATA_HOME: join(dir, 'data'), XDG_CONFIG_HOME: join(dir, 'config') }),
      ready: () => listening(httpsPort),
    });
  }
  return {
    dir, api, vestibule, front, httpsPort, httpPort, publicUrl, ca: readFileSync(cert),
    async stop() {
      await front?.stop();
      await vestibule?.stop();
      await api.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

for (const proxy of ['nginx', 'caddy']) {
  describe(`deploy/ behind ${proxy}`, { skip: missing(proxy) }, () => {
    /** @type {Awaited<ReturnType<typeof deploy>>} */
    let d;
    let browser;
    before(async () => {
      d = await deploy(proxy);
      browser = await launch({ hostRules: `MAP ${HOST} 127.0.0.1`, ignoreHTTPSErrors: true });
    });
    after(async () => {
      await browser?.close();
      await d?.stop();
    });

    test('a browser logs in over TLS, its __Host- cookie works, and the API sees who it is', async () => {
      const { page, context } = browser;
      const res = await page.goto(`${d.publicUrl}/`);
      assert.equal(res?.status(), 200);
      assert.equal(await page.textContent('#page'), 'deployed');
      assert.match(res?.headers()['strict-transport-security'] || '', /max-age=31536000/);

      const login = await page.evaluate(async ([username, password]) => {
        const r = await fetch('/auth/login', {
          method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ username, password }),
        });
        return { status: r.status, body: await r.json() };
      }, [USER, PASSWORD]);
      assert.equal(login.status, 200, JSON.stringify(login.body));
      const cookie = (await context.cookies()).find((c) => c.name === '__Host-vestibule_session');
      assert.ok(cookie, 'the https public_url gives the __Host- session cookie');
      assert.equal(cookie.secure, true);
      assert.equal(cookie.httpOnly, true);
      assert.equal(cookie.sameSite, 'Lax');

      const who = await page.evaluate(async () => (await fetch('/api/whoami')).json());
      assert.equal(who.user, String(login.body.user.id), 'the gateway forwarded the identity');
      assert.equal(who.proto, 'https');
      assert.equal(who.assertion, true, 'identity_assertion = true in the recipe');
      assert.equal(who.xff, '127.0.0.1', 'the API sees the client address the proxy recorded');

      // CSRF through the proxy: a write without the token is refused, with it it passes (so the
      // proxy forwarded what the origin check needs).
      const writes = await page.evaluate(async (token) => {
        const post = (headers) => fetch('/api/notes', { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: '{}' });
        const bare = await post({});
        const withToken = await post({ 'x-csrf-token': token });
        return { bare: bare.status, bareCode: (await bare.json()).code, withToken: withToken.status };
      }, login.body.csrf_token);
      assert.deepEqual(writes, { bare: 403, bareCode: 'csrf_token_missing', withToken: 200 });
      await page.screenshot({ path: artifact(`deploy-${proxy}.png`) });
    });

    test('a WebSocket opens through the proxy and the gateway, with the identity', async () => {
      const { page } = browser;
      await page.goto(`${d.publicUrl}/`);
      const echoed = await page.evaluate(() => new Promise((ok, fail) => {
        const ws = new WebSocket(`wss://${location.host}/api/ws`);
        ws.onopen = () => ws.send('hello through the proxy');
        ws.onmessage = (e) => {
          ok(e.data);
          ws.close();
        };
        ws.onerror = () => fail(new Error('WebSocket failed'));
        setTimeout(() => fail(new Error('no echo within 5 s')), 5000);
      }));
      assert.equal(echoed, 'hello through the proxy');
      const upgrade = d.api.seen.find((r) => r.method === 'UPGRADE');
      assert.ok(upgrade?.user, 'the upgrade reached the API authenticated');
    });

    test('a write from another origin is refused even with the cookie and the token', async () => {
      const { page, context } = browser;
      await page.goto(`${d.publicUrl}/`);
      const token = await page.evaluate(async () => (await (await fetch('/auth/csrf')).json()).csrf_token);
      const cookie = (await context.cookies()).find((c) => c.name === '__Host-vestibule_session');
      assert.ok(cookie && token);
      const before = d.api.seen.filter((r) => r.method === 'POST').length;
      const res = await https(d.httpsPort, d.ca, {
        method: 'POST', path: '/api/notes', body: '{}',
        headers: { cookie: `${cookie.name}=${cookie.value}`, 'x-csrf-token': token, origin: 'https://evil.example', 'content-type': 'application/json' },
      });
      assert.equal(res.status, 403, res.text);
      assert.equal(JSON.parse(res.text).code, 'csrf_origin_untrusted');
      assert.equal(d.api.seen.filter((r) => r.method === 'POST').length, before, 'the API never saw it');
    });

    test('a client-sent X-Forwarded-For or Forwarded earns no fresh login budget', async () => {
      const statuses = [];
      for (let i = 1; i <= LOGIN_PER_IP + 3; i += 1) {
        const res = await https(d.httpsPort, d.ca, {
          method: 'POST', path: '/auth/login',
          body: JSON.stringify({ username: `nobody${i}`, password: 'not the password' }),
          headers: {
            'content-type': 'application/json', origin: d.publicUrl,
            'x-forwarded-for': `198.51.100.${i}`, forwarded: `for=198.51.100.${i}`,
          },
        });
        statuses.push(res.status);
        if (res.status === 429) break;
      }
      // 127.0.0.1's budget runs out within LOGIN_PER_IP + 1 attempts (fewer when the browser's
      // login drew from it already); a believed spoofed address would never run out.
      assert.equal(statuses.at(-1), 429, `statuses: ${statuses}`);
      assert.ok(statuses.length <= LOGIN_PER_IP + 1, `statuses: ${statuses}`);
    });

    test('plain http is redirected to https', async () => {
      const res = await new Promise((ok, fail) => {
        const req = httpRequest({ host: '127.0.0.1', port: d.httpPort, path: '/auth/me', headers: { host: HOST } }, (r) => {
          r.resume();
          ok(r);
        });
        req.on('error', fail);
        req.end();
      });
      assert.ok([301, 302, 307, 308].includes(res.statusCode), `status ${res.statusCode}`);
      assert.match(res.headers.location || '', new RegExp(`^https://${HOST.replaceAll('.', '\\.')}(:\\d+)?/auth/me$`));
    });
  });
}

test('the systemd unit passes systemd-analyze verify', { skip: missing('systemd-analyze') }, () => {
  const dir = tempDir('vestibule-deploy-systemd-');
  try {
    const envFile = join(dir, 'vestibule.env');
    copyFileSync(join(root, 'deploy/systemd/vestibule.env.example'), envFile);
    const unit = join(dir, 'vestibule.service');
    writeFileSync(unit, recipe('deploy/systemd/vestibule.service', [
      ['ExecStart=/usr/local/bin/vestibule ', `ExecStart=${BIN} `],
      ['EnvironmentFile=/etc/vestibule/vestibule.env', `EnvironmentFile=${envFile}`],
    ]));
    const r = spawnSync(tools['systemd-analyze'], ['verify', unit], { encoding: 'utf8' });
    const about = `${r.stdout}${r.stderr}`.split('\n').filter((l) => l.includes('vestibule.service'));
    assert.equal(r.status, 0, `${r.stdout}${r.stderr}`);
    assert.deepEqual(about, [], 'no warning about the unit');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

