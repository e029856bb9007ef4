// Browser end-to-end support: Debian's Chromium through playwright-core (never a downloaded
// browser), a fresh profile per launch, tiny static page servers on loopback, and the real
// `vestibule serve` (from the JS client's test support).
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
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
 * @param {{ hostRules?: string }} [opts] hostRules: --host-resolver-rules, e.g. "MAP *.acme.test 127.0.0.1"
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
