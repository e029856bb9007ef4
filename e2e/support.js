// Browser end-to-end support: Debian's Chromium through playwright-core (never a downloaded
// browser), a fresh profile per launch, tiny static page servers on loopback, and the real
// `vestibule serve` (from the JS client's test support).
import { spawn, spawnSync } from 'node:child_process';
import { closeSync, cpSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, symlinkSync } from 'node:fs';
import { createServer } from 'node:http';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

import { freePort } from '../clients/js/test/support.js';

export { freePort, PASSWORD, startServer, uniqueName } from '../clients/js/test/support.js';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');

/** Where screenshots go (ignored by git, under target/). */
export const ARTIFACTS = process.env.E2E_ARTIFACTS || join(root, 'target', 'e2e-artifacts');

const CLIENT_JS = readFileSync(join(root, 'clients/js/src/index.js'), 'utf8');

/** Per-action and navigation timeout in the browser. */
const TIMEOUT_MS = 10_000;

/**
 * Launches Chromium with a fresh --user-data-dir (removed by close()).
 * @param {{ hostRules?: string, ignoreHTTPSErrors?: boolean }} [opts] hostRules: --host-resolver-rules,
 *   e.g. "MAP *.acme.test 127.0.0.1"; ignoreHTTPSErrors: accept a test's self-signed certificate
 */
export async function launch(opts = {}) {
  const profile = mkdtempSync(join(tmpdir(), 'vestibule-e2e-profile-'));
  const args = [
    '--no-sandbox',
    '--disable-gpu',
    '--disable-quic',
    '--no-first-run',
    '--disable-background-networking',
    '--disable-component-update',
    '--disable-sync',
  ];
  if (opts.hostRules) args.push(`--host-resolver-rules=${opts.hostRules}`);
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args,
    ignoreHTTPSErrors: Boolean(opts.ignoreHTTPSErrors),
    timeout: 30_000,
  });
  context.setDefaultTimeout(TIMEOUT_MS);
  context.setDefaultNavigationTimeout(TIMEOUT_MS);
  const page = context.pages()[0] || (await context.newPage());
  /** Uncaught exceptions and console errors of the page (not the browser's own log lines for
   * non-2xx answers, which the pages expect, e.g. /auth/me answering 401). */
  /** @type {string[]} */
  const consoleErrors = [];
  page.on('pageerror', (e) => consoleErrors.push(`uncaught: ${e.message}`));
  page.on('console', (m) => {
    if (m.type() === 'error' && !m.text().startsWith('Failed to load resource')) consoleErrors.push(m.text());
  });
  return {
    context,
    page,
    consoleErrors,
    async close() {
      await context.close().catch(() => {});
      rmSync(profile, { recursive: true, force: true });
    },
  };
}

/** A page that loads vestibule-client from its own origin (as an app bundles it) into window.vestibule. */
export const SPA_PAGE = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>SPA</title>
<script type="module">
import * as vestibule from '/client.js';
window.vestibule = vestibule;
document.body.dataset.ready = 'yes';
</script></head><body><h1>SPA</h1></body></html>`;

/**
 * A static page server on 127.0.0.1 (a free port unless given): `pages` maps paths to HTML,
 * `/client.js` is the JS client. Records each request's path, Origin and cookie names.
 * @param {{ pages?: Record<string, string>, port?: number }} [opts]
 */
export async function startPageServer(opts = {}) {
  const pages = { '/': SPA_PAGE, ...(opts.pages || {}) };
  /** @type {{ method: string, path: string, cookieNames: string[] }[]} */
  const requests = [];
  const server = createServer((req, res) => {
    const path = new URL(req.url || '/', 'http://x').pathname;
    const cookieNames = (req.headers.cookie || '')
      .split(';')
      .map((c) => c.split('=')[0].trim())
      .filter(Boolean);
    requests.push({ method: req.method || 'GET', path, cookieNames });
    if (path === '/client.js') {
      res.writeHead(200, { 'content-type': 'text/javascript; charset=utf-8', 'cache-control': 'no-store' });
      res.end(CLIENT_JS);
    } else if (Object.hasOwn(pages, path)) {
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' });
      res.end(pages[path]);
    } else {
      res.writeHead(404, { 'content-type': 'text/plain' });
      res.end('not found');
    }
  });
  server.keepAliveTimeout = 1000;
  let port = 0;
  // A free port can be taken before we bind it: try a few.
  for (let attempt = 1; ; attempt += 1) {
    port = opts.port || (await freePort());
    try {
      await new Promise((ok, fail) => {
        server.once('error', fail);
        server.listen(port, '127.0.0.1', () => {
          server.off('error', fail);
          ok(undefined);
        });
      });
      break;
    } catch (e) {
      if (opts.port || attempt >= 3) throw e;
    }
  }
  return {
    port,
    requests,
    stop: () =>
      new Promise((ok) => {
        server.closeAllConnections();
        server.close(() => ok(undefined));
      }),
  };
}

/** Opens `url` and waits until the page's module has loaded the client. */
export async function openSpa(page, url) {
  await page.goto(url);
  await page.waitForSelector('body[data-ready="yes"]');
}

/** Makes the artifacts directory and returns a path in it. */
export function artifact(name) {
  mkdirSync(ARTIFACTS, { recursive: true });
  return join(ARTIFACTS, name);
}

/** The config of an API at http://{host}:{port} for `spa` origins, with signup and _debug on. */
export function apiToml({ host = 'localhost', spa = [], extra = '' } = {}) {
  return (port) =>
    `listen = "127.0.0.1:${port}"\npublic_url = "http://${host}:${port}"\n` +
    `spa_origins = ${JSON.stringify(spa)}\ndebug_endpoint = true\n${extra}\n[auth]\nsignup = true\n`;
}

// ---- The examples (examples/react-spa, examples/notes-api) ----

/** examples/react-spa in the repository (tests copy it before changing anything). */
export const REACT_SPA = join(root, 'examples', 'react-spa');

/** notes-api: $TEST_NOTES_API_BIN (set by scripts/test.sh), else the debug build. */
export const NOTES_API_BIN = process.env.TEST_NOTES_API_BIN || join(root, 'target', 'debug', 'notes-api');

/** This environment without VESTIBULE_* (read as configuration), rate limits lifted for tests. */
export function childEnv(extra = {}) {
  /** @type {Record<string, string>} */
  const env = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (v !== undefined && !k.startsWith('VESTIBULE_')) env[k] = v;
  }
  env.VESTIBULE_LOG = process.env.VESTIBULE_LOG || 'warn';
  for (const limit of ['LOGIN_PER_IP', 'LOGIN_PER_USER', 'LOGIN_PER_DEVICE', 'SIGNUP_PER_IP',
    'PASSWORD_PER_USER', 'TOKEN_CREATE_PER_USER', 'ANONYMOUS_SESSIONS_PER_IP']) {
    env[`VESTIBULE_RATE_LIMITS__${limit}`] = 'off';
  }
  return { ...env, ...extra };
}

const pause = (ms) => new Promise((r) => setTimeout(r, ms));

/**
 * Spawns a long-running process (stdout and stderr to files in `dir`) and waits, at most
 * `timeoutMs`, until `ready()` resolves true. stop() sends SIGTERM, then SIGKILL after 5 s.
 * @param {{ cmd: string, args: string[], cwd: string, dir: string, name: string,
 *   env?: Record<string, string>, ready: () => Promise<boolean>, timeoutMs?: number }} o
 */
export async function startProcess(o) {
  const out = openSync(join(o.dir, `${o.name}.out`), 'w');
  const err = openSync(join(o.dir, `${o.name}.err`), 'w');
  const child = spawn(o.cmd, o.args, { cwd: o.cwd, stdio: ['ignore', out, err], env: o.env || childEnv() });
  closeSync(out);
  closeSync(err);
  let exited = false;
  child.on('exit', () => {
    exited = true;
  });
  const logs = () =>
    ['out', 'err'].map((s) => readFileSync(join(o.dir, `${o.name}.${s}`), 'utf8')).join('\n');
  const stop = async () => {
    if (exited) return;
    child.kill('SIGTERM');
    const until = Date.now() + 5000;
    while (!exited && Date.now() < until) await pause(20);
    if (!exited) child.kill('SIGKILL');
  };
  const deadline = Date.now() + (o.timeoutMs || 20_000);
  while (!exited && Date.now() < deadline) {
    if (await o.ready().catch(() => false)) return { pid: child.pid, logs, stop, stdout: () => readFileSync(join(o.dir, `${o.name}.out`), 'utf8') };
    await pause(50);
  }
  await stop();
  throw new Error(`${o.name} did not start (${o.cmd} ${o.args.join(' ')}):\n${logs()}`);
}

/** Whether `url` answers at all (any status) within a second. */
export async function answers(url) {
  await fetch(url, { signal: AbortSignal.timeout(1000) });
  return true;
}

/**
 * `notes-api upstream` on `listen` (default: a port the OS picks; the address is read from the
 * line it prints). `args` are extra flags (--jwks-url, --audience).
 * @param {{ dir: string, listen?: string, args?: string[] }} o
 */
export async function startNotesApi(o) {
  let url = '';
  const proc = await startProcess({
    cmd: NOTES_API_BIN,
    args: ['upstream', '--listen', o.listen || '127.0.0.1:0', ...(o.args || [])],
    cwd: o.dir,
    dir: o.dir,
    name: 'notes-api',
    ready: async () => {
      const m = /listening on (http:\/\/\S+)/.exec(readFileSync(join(o.dir, 'notes-api.out'), 'utf8'));
      if (m) url = m[1];
      return Boolean(m);
    },
  });
  return { ...proc, url };
}

/**
 * Copies examples/react-spa into `dest` (node_modules copied too, with vestibule-client linked
 * to this checkout's clients/js by absolute path), so a test may edit sources and Vite may
 * write its cache without touching the repository.
 */
export function copyReactSpa(dest) {
  cpSync(REACT_SPA, dest, {
    recursive: true,
    verbatimSymlinks: true,
    filter: (src) => src !== join(REACT_SPA, 'dist') && src !== join(REACT_SPA, 'node_modules', '.vite'),
  });
  const link = join(dest, 'node_modules', 'vestibule-client');
  rmSync(link, { recursive: true, force: true });
  symlinkSync(join(root, 'clients', 'js'), link, 'dir');
}

/** Runs `node node_modules/vite/bin/vite.js ...args` in `cwd` to completion (at most 60 s). */
export function runVite(cwd, args) {
  const r = spawnSync(process.execPath, [join(cwd, 'node_modules', 'vite', 'bin', 'vite.js'), ...args], {
    cwd,
    encoding: 'utf8',
    timeout: 60_000,
    env: childEnv(),
  });
  if (r.status !== 0) throw new Error(`vite ${args.join(' ')} failed:\n${r.stdout}\n${r.stderr}`);
}

/** A fresh temporary directory (the caller removes it). */
export function tempDir(prefix) {
  return mkdtempSync(join(tmpdir(), prefix));
}
