// Cross-checks `vestibule doctor` against real Chromium: for each scenario, one small API server
// on loopback behaves as described, Chromium (third-party cookies blocked, the default) logs in
// from the page and calls again, and the API records whether the session cookie came back. The
// doctor's verdict for "Chromium, third-party cookies blocked" must match.
//
// Run by scripts/test.sh (the README's test command); alone: `node e2e/doctor/run.mjs` after
// `cargo build -p vestibule-cli` and `npm ci` at the root (playwright-core comes from there).
// (https scenarios: a self-signed certificate from the openssl CLI, trusted by the doctor via --cacert)
// Needs /usr/bin/chromium (apt-get install -y chromium). Exit 1 on any mismatch.

import { createServer } from 'node:http';
import { createServer as createTlsServer } from 'node:https';
import { execFile, execFileSync, spawn } from 'node:child_process';
import { promisify } from 'node:util';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const here = dirname(fileURLToPath(import.meta.url));
const VESTIBULE = process.env.TEST_VESTIBULE_BIN ?? join(here, '../../target/debug/vestibule');

/** This environment without VESTIBULE_* variables: the server reads every one as configuration
 * and refuses unknown keys (CI sets VESTIBULE_REQUIRE_SERVICES for the Rust tests). */
function serverEnv() {
  return Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('VESTIBULE_')));
}
const HOSTS = ['www.acme.test', 'api.acme.test', 'app.spa.test'];

const LAX = 'sid=e2e; Path=/; HttpOnly; SameSite=Lax';
const scenarios = [
  { name: 'localhost ports, include', page: 'localhost', api: 'localhost', mode: 'include', cookie: LAX },
  { name: 'localhost ports, default credentials', page: 'localhost', api: 'localhost', mode: 'same-origin', cookie: LAX },
  { name: 'localhost page, 127.0.0.1 API', page: 'localhost', api: '127.0.0.1', mode: 'include', cookie: LAX },
  { name: 'www/api subdomains over http', page: 'www.acme.test', api: 'api.acme.test', mode: 'include', cookie: LAX },
  { name: 'SameSite=None without Secure', page: 'localhost', api: 'localhost', mode: 'include', cookie: 'sid=e2e; Path=/; SameSite=None' },
  { name: 'Secure over http on a named host', page: 'www.acme.test', api: 'api.acme.test', mode: 'include', cookie: 'sid=e2e; Path=/; Secure; SameSite=Lax' },
  { name: 'cross-site SameSite=None; Secure', page: 'localhost', api: '127.0.0.1', mode: 'include', cookie: 'sid=e2e; Path=/; Secure; SameSite=None' },
  { name: 'cross-site SameSite=None; Secure; Partitioned', page: 'localhost', api: '127.0.0.1', mode: 'include', cookie: 'sid=e2e; Path=/; Secure; SameSite=None; Partitioned' },
  { name: 'Domain not matching the API host', page: 'www.acme.test', api: 'api.acme.test', mode: 'include', cookie: 'sid=e2e; Path=/; Domain=www.acme.test; SameSite=Lax' },
  { name: 'proxied Path not covering the API path', page: 'same', api: 'www.acme.test', prefix: '/api', mode: 'same-origin', cookie: 'sid=e2e; Path=/auth; SameSite=Lax' },
  { name: 'www/api subdomains over https, __Host- cookie', tls: true, page: 'www.acme.test', api: 'api.acme.test', mode: 'include', cookie: '__Host-sid=e2e; Path=/; Secure; HttpOnly; SameSite=Lax' },
  { name: 'truly cross-site over https without Partitioned', tls: true, page: 'app.spa.test', api: 'api.acme.test', mode: 'include', cookie: 'sid=e2e; Path=/; Secure; SameSite=None' },
  { name: 'truly cross-site over https with Partitioned', tls: true, page: 'app.spa.test', api: 'api.acme.test', mode: 'include', cookie: 'sid=e2e; Path=/; Secure; SameSite=None; Partitioned' },
  { name: 'http page, https API (schemeful cross-site)', tls: 'api', page: 'www.acme.test', api: 'api.acme.test', mode: 'include', cookie: 'sid=e2e; Path=/; Secure; SameSite=Lax' },
  { name: 'https page, plain-http API (mixed content)', tls: 'page', page: 'www.acme.test', api: 'api.acme.test', mode: 'include', cookie: LAX },
  // Rule 2: the cookie is stored and sent although the page cannot read the login answer. The
  // doctor fails the flow (the login call throws) and must say the cookie is still stored.
  { name: 'login answer without CORS headers (cookie stored anyway)', page: 'localhost', api: 'localhost', mode: 'include', cookie: LAX, loginCors: false, unreadable: true },
  { name: 'preflight refused (404)', page: 'localhost', api: 'localhost', mode: 'include', cookie: LAX, preflight: 404 },
];

// A self-signed certificate for the test host names (Chromium ignores certificate errors; the
// doctor is given the certificate with --cacert, so it verifies as usual).
const certDir = mkdtempSync(join(tmpdir(), 'vestibule-doctor-e2e-cert-'));
execFileSyncQuiet('openssl', [
  'req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1', '-subj', '/CN=acme.test',
  '-addext', `subjectAltName=${HOSTS.map((h) => `DNS:${h}`).join(',')}`,
  // An end-entity certificate: verifiers refuse a CA certificate used as a server's.
  '-addext', 'basicConstraints=critical,CA:FALSE',
  '-keyout', join(certDir, 'key.pem'), '-out', join(certDir, 'cert.pem'),
]);
const TLS = { key: readFileSync(join(certDir, 'key.pem')), cert: readFileSync(join(certDir, 'cert.pem')) };

function execFileSyncQuiet(cmd, args) {
  execFileSync(cmd, args, { stdio: 'ignore' });
}

function listen(handler, tls = false) {
  return new Promise((resolve) => {
    const server = tls ? createTlsServer(TLS, handler) : createServer(handler);
    server.listen(0, '127.0.0.1', () => resolve(server));
  });
}

// The API: preflights allowed, CORS echoing the origin with credentials and Vary, the scenario's
// Set-Cookie on login, and a record of the Cookie header of every later GET.
async function api(scenario) {
  const seen = [];
  const server = await listen((req, res) => {
    const origin = req.headers.origin;
    const bareLogin = scenario.loginCors === false && req.method === 'POST';
    if (origin && !bareLogin) {
      res.setHeader('access-control-allow-origin', origin);
      res.setHeader('access-control-allow-credentials', 'true');
      res.setHeader('vary', 'Origin');
    }
    const path = req.url.split('?')[0];
    if (req.method === 'OPTIONS' && scenario.preflight) {
      res.writeHead(scenario.preflight).end();
    } else if (req.method === 'OPTIONS') {
      res.setHeader('access-control-allow-methods', 'GET, POST');
      res.setHeader('access-control-allow-headers', 'content-type');
      res.writeHead(204).end();
    } else if (req.method === 'POST') {
      req.resume();
      res.setHeader('set-cookie', scenario.cookie);
      res.setHeader('content-type', 'application/json');
      res.writeHead(200).end('{"ok":true}');
    } else if (path.endsWith('/me')) {
      seen.push(req.headers['user-agent']?.startsWith('vestibule-doctor') ? null : (req.headers.cookie ?? ''));
      res.writeHead(200).end('{}');
    } else {
      res.setHeader('content-type', 'text/html');
      res.writeHead(200).end('<!doctype html><title>page</title>');
    }
  }, scenario.tls === true || scenario.tls === 'api');
  return { server, seen, port: server.address().port };
}

async function pageServer(tls) {
  return listen((req, res) => {
    res.setHeader('content-type', 'text/html');
    res.writeHead(200).end('<!doctype html><title>page</title>');
  }, tls);
}

// Async: the API servers live in this process and must keep answering while the doctor runs.
async function doctorVerdict(pageUrl, apiUrl, mode) {
  const args = ['doctor', '--page', pageUrl, '--api', apiUrl, '--json-body', '{}', '--credentials', mode, '--json', '--cacert', join(certDir, 'cert.pem')];
  for (const h of HOSTS) args.push('--resolve', `${h}:127.0.0.1`);
  let out;
  try {
    ({ stdout: out } = await promisify(execFile)(VESTIBULE, args, { encoding: 'utf8' }));
  } catch (e) {
    if (e.code !== 1) throw e;
    out = e.stdout;
  }
  const d = JSON.parse(out);
  return { works: d.verdicts.find((v) => v.family === 'chromium-3pc-blocked').status === 'pass', text: out };
}

const profile = mkdtempSync(join(tmpdir(), 'vestibule-doctor-e2e-'));
const context = await chromium.launchPersistentContext(profile, {
  executablePath: '/usr/bin/chromium',
  headless: true,
  args: [
    '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync',
    '--ignore-certificate-errors',
    `--host-resolver-rules=${HOSTS.map((h) => `MAP ${h} 127.0.0.1`).join(', ')}`,
  ],
});
let mismatches = 0;
try {
  for (const s of scenarios) {
    const a = await api(s);
    // tls: true (both), 'api' (the API only) or 'page' (the page only).
    const pageTls = s.tls === true || s.tls === 'page';
    const p = s.page === 'same' ? null : await pageServer(pageTls);
    const prefix = s.prefix ?? '';
    const apiScheme = s.tls === true || s.tls === 'api' ? 'https' : 'http';
    const pageScheme = pageTls ? 'https' : 'http';
    const apiBase = `${apiScheme}://${s.api}:${a.port}${prefix}`;
    const pageUrl = p ? `${pageScheme}://${s.page}:${p.address().port}/` : `${apiScheme}://${s.api}:${a.port}/`;
    const page = await context.newPage();
    await page.goto(pageUrl);
    await page.evaluate(async ({ apiBase, mode }) => {
      const opts = { credentials: mode };
      try {
        await fetch(`${apiBase}/auth/login`, { ...opts, method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' });
      } catch {}
      try {
        await fetch(`${apiBase}/auth/me`, opts);
      } catch {}
    }, { apiBase, mode: s.mode });
    await page.close();
    await context.clearCookies();
    const browserWorks = a.seen.some((c) => c !== null && c.includes('sid=e2e'));
    const doctor = await doctorVerdict(pageUrl.replace(/\/$/, ''), `${apiBase}/auth/login`, s.mode);
    const doctorWorks = doctor.works;
    const ok = s.unreadable
      ? browserWorks && !doctorWorks && doctor.text.includes('still stored (rule 2)')
      : browserWorks === doctorWorks;
    if (!ok) mismatches += 1;
    const said = s.unreadable ? `${doctorWorks ? 'works' : 'fails'} (login answer unreadable, cookie still stored)` : (doctorWorks ? 'works' : 'fails');
    console.log(`${ok ? 'agree   ' : 'MISMATCH'}  ${s.name}: Chromium ${browserWorks ? 'sent the cookie back' : 'dropped it'}, doctor says ${said}`);
    a.server.close();
    p?.close();
  }
  // Live detection: a real `vestibule serve` (debug_endpoint on) must log the drop once when the
  // page signs up without credentials: 'include', and stay quiet when it uses it.
  for (const mode of ['same-origin', 'include']) {
    const p = await pageServer(false);
    const pageOrigin = `http://localhost:${p.address().port}`;
    const probe = await listen(() => {});
    const port = probe.address().port;
    probe.close();
    const dir = mkdtempSync(join(tmpdir(), 'vestibule-doctor-e2e-serve-'));
    const server = spawn(VESTIBULE, ['serve', '--demo', '--listen', `127.0.0.1:${port}`], {
      cwd: dir,
      env: { ...serverEnv(), VESTIBULE_DEBUG_ENDPOINT: 'true', VESTIBULE_SPA_ORIGINS: pageOrigin, VESTIBULE_PUBLIC_URL: `http://localhost:${port}` },
    });
    let logs = '';
    server.stderr.on('data', (d) => { logs += d; });
    for (let i = 0; i < 100; i += 1) {
      const up = await fetch(`http://127.0.0.1:${port}/healthz`).then((r) => r.ok, () => false);
      if (up) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    const page = await context.newPage();
    await page.goto(`${pageOrigin}/`);
    await page.evaluate(async ({ api, mode }) => {
      await fetch(`${api}/auth/signup`, { method: 'POST', credentials: mode, headers: { 'content-type': 'application/json' }, body: JSON.stringify({ username: 'e2e', password: 'a long password' }) });
      await fetch(`${api}/auth/me`, { credentials: mode });
      await fetch(`${api}/auth/me`, { credentials: mode });
    }, { api: `http://localhost:${port}`, mode });
    await page.close();
    await context.clearCookies();
    server.kill('SIGTERM');
    await new Promise((r) => server.on('exit', r));
    rmSync(dir, { recursive: true, force: true });
    p.close();
    const count = logs.split('the browser did not store or send the session cookie').length - 1;
    const expected = mode === 'include' ? 0 : 1;
    const ok = count === expected;
    if (!ok) mismatches += 1;
    console.log(`${ok ? 'agree   ' : 'MISMATCH'}  live detection, credentials ${mode}: logged the drop ${count} time(s), expected ${expected}`);
  }
  // The offline check (`doctor --config … --page …`) runs the server's own CSRF decision: a
  // real `vestibule serve` whose spa_origins leave the page out refuses Chromium's login from it
  // with 403 csrf_origin_untrusted, and the offline check must predict that 403 (it used to
  // predict 200 and a stored cookie); with the page listed, neither refuses.
  for (const trusted of [false, true]) {
    const p = await pageServer(false);
    const pageOrigin = `http://localhost:${p.address().port}`;
    const probe = await listen(() => {});
    const port = probe.address().port;
    probe.close();
    const dir = mkdtempSync(join(tmpdir(), 'vestibule-doctor-e2e-csrf-'));
    const config = join(dir, 'vestibule.toml');
    const listed = trusted ? pageOrigin : 'http://localhost:1';
    writeFileSync(config, `public_url = "http://localhost:${port}"\nspa_origins = ["${listed}"]\n`);
    const server = spawn(VESTIBULE, ['serve', '--config', config, '--listen', `127.0.0.1:${port}`], { cwd: dir, env: serverEnv() });
    let logs = '';
    server.stderr.on('data', (d) => { logs += d; });
    for (let i = 0; i < 100; i += 1) {
      const up = await fetch(`http://127.0.0.1:${port}/healthz`).then((r) => r.ok, () => false);
      if (up) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    const page = await context.newPage();
    await page.goto(`${pageOrigin}/`);
    // A simple request (no preflight), so the login reaches the server whatever CORS says.
    await page.evaluate(async (api) => {
      try {
        await fetch(`${api}/auth/login`, { method: 'POST', mode: 'no-cors', credentials: 'include', headers: { 'content-type': 'text/plain' }, body: '{"username":"e2e","password":"a long password"}' });
      } catch {}
    }, `http://localhost:${port}`);
    await page.close();
    await context.clearCookies();
    await new Promise((r) => setTimeout(r, 200));
    server.kill('SIGTERM');
    await new Promise((r) => server.on('exit', r));
    const refused = /csrf\.refused.*CsrfOriginUntrusted|CsrfOriginUntrusted.*csrf\.refused/.test(logs);
    let out;
    try {
      ({ stdout: out } = await promisify(execFile)(VESTIBULE, ['doctor', '--config', config, '--page', pageOrigin, '--json'], { encoding: 'utf8', cwd: dir, env: serverEnv() }));
    } catch (e) {
      if (e.code !== 1) throw e;
      out = e.stdout;
    }
    rmSync(dir, { recursive: true, force: true });
    p.close();
    const status = JSON.parse(out).findings.find((f) => f.rule === 'response-status');
    const predicted = status?.status === 'fail' && status.summary.includes('csrf_origin_untrusted');
    const ok = refused === !trusted && predicted === refused;
    if (!ok) mismatches += 1;
    console.log(`${ok ? 'agree   ' : 'MISMATCH'}  page ${trusted ? 'in' : 'not in'} spa_origins: the server ${refused ? 'refused' : 'did not refuse'} Chromium's login (csrf_origin_untrusted), the offline doctor ${predicted ? 'predicts' : 'does not predict'} that refusal`);
  }
} finally {
  await context.close();
  rmSync(profile, { recursive: true, force: true });
  rmSync(certDir, { recursive: true, force: true });
}
console.log(mismatches === 0 ? `all ${scenarios.length} scenarios, the live detection and the CSRF prediction agree` : `${mismatches} mismatch(es)`);
process.exit(mismatches === 0 ? 0 : 1);
