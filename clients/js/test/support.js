// Test support: a real `vestibule serve` on a free port, and a cookie jar for Node's fetch.
import { spawn } from 'node:child_process';
import { mkdtempSync, openSync, rmSync, writeFileSync, readFileSync, closeSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));

/** The binary under test: $TEST_VESTIBULE_BIN (set by scripts/test.sh), else the debug build. */
export const BIN = process.env.TEST_VESTIBULE_BIN || resolve(here, '../../../target/debug/vestibule');

/** A TCP port that was free a moment ago (the server binds it right after). */
export function freePort() {
  return new Promise((ok, fail) => {
    const srv = createServer();
    srv.unref();
    srv.on('error', fail);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = /** @type {import('node:net').AddressInfo} */ (srv.address());
      srv.close(() => ok(port));
    });
  });
}

/** The environment without VESTIBULE_* settings (the server reads those as configuration). */
function serverEnv() {
  /** @type {Record<string, string>} */
  const env = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (v !== undefined && !k.startsWith('VESTIBULE_')) env[k] = v;
  }
  env.VESTIBULE_LOG = process.env.VESTIBULE_LOG || 'warn';
  // Every test client logs in from 127.0.0.1, far more often than people do: lift the login,
  // signup and token rate limits (their own tests live in the Rust suite).
  for (const limit of ['LOGIN_PER_IP', 'LOGIN_PER_USER', 'LOGIN_PER_DEVICE', 'SIGNUP_PER_IP',
    'PASSWORD_PER_USER', 'TOKEN_CREATE_PER_USER', 'ANONYMOUS_SESSIONS_PER_IP', 'MFA_PER_USER',
    'EMAIL_PER_IP', 'EMAIL_PER_ADDRESS']) {
    env[`VESTIBULE_RATE_LIMITS__${limit}`] = 'off';
  }
  return env;
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/**
 * Starts `vestibule serve` in a fresh temporary directory with `toml` (a function of the port,
 * returning the config file's text) and waits (at most 15 s) until /healthz answers. Demo mode
 * is on unless `demo: false`: the tests write session data through its `/demo/counter`.
 * `env` adds variables (e.g. `VESTIBULE_LOG`) to the server's environment.
 * @param {{ toml?: (port: number) => string, host?: string, demo?: boolean, env?: Record<string, string>, port?: number }} [opts]
 */
export async function startServer(opts = {}) {
  const toml = opts.toml || ((port) => `listen = "127.0.0.1:${port}"\n[auth]\nsignup = true\n`);
  let lastError = '';
  // A port can be taken between freePort() and the bind: try a few.
  for (let attempt = 0; attempt < 3; attempt += 1) {
    // `port`: chosen by the caller (who registered it elsewhere first, e.g. at an OpenID provider).
    const port = opts.port || (await freePort());
    const dir = mkdtempSync(join(tmpdir(), 'vestibule-js-'));
    const config = join(dir, 'vestibule.toml');
    const demo = `demo = ${opts.demo !== false}\n`;
    writeFileSync(config, `database_url = ${JSON.stringify(join(dir, 'vestibule.db'))}\n${demo}${toml(port)}`);
    const out = openSync(join(dir, 'server.out'), 'w');
    const err = openSync(join(dir, 'server.err'), 'w');
    const child = spawn(BIN, ['serve', '--config', config], {
      cwd: dir,
      stdio: ['ignore', out, err],
      env: { ...serverEnv(), ...(opts.env || {}) },
    });
    closeSync(out);
    closeSync(err);
    let exited = false;
    child.on('exit', () => {
      exited = true;
    });
    const url = `http://127.0.0.1:${port}`;
    const deadline = Date.now() + 15_000;
    while (!exited && Date.now() < deadline) {
      try {
        const res = await fetch(`${url}/healthz`, { signal: AbortSignal.timeout(1000) });
        if (res.ok) {
          return {
            port,
            url,
            dir,
            pid: child.pid,
            logs: () => readFileSync(join(dir, 'server.err'), 'utf8'),
            async stop() {
              if (!exited) {
                child.kill('SIGTERM');
                const until = Date.now() + 5000;
                while (!exited && Date.now() < until) await sleep(20);
                if (!exited) child.kill('SIGKILL');
              }
              rmSync(dir, { recursive: true, force: true });
            },
          };
        }
      } catch {
        // not up yet
      }
      await sleep(50);
    }
    lastError = readFileSync(join(dir, 'server.err'), 'utf8');
    if (!exited) child.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  }
  throw new Error(`vestibule serve did not start (${BIN}):\n${lastError}`);
}

/**
 * A fetch with a cookie jar (Node's fetch has none) that also records every request it sends,
 * so tests can assert the credentials mode and headers the client chose. Cookies are kept per
 * host, honouring Max-Age=0 deletions; Domain/Path are ignored (one server per test).
 * `credentials: 'omit'` sends no cookie and stores none, like a browser.
 */
export function cookieJarFetch() {
  /** @type {Map<string, Map<string, string>>} */
  const jar = new Map();
  /** @type {{url: string, method: string, credentials: string | undefined, headers: Headers, body?: unknown, status?: number}[]} */
  const requests = [];
  /** @type {(input: any, init?: any) => Promise<Response>} */
  const jarFetch = async (input, init = {}) => {
    const url = new URL(typeof input === 'string' || input instanceof URL ? input : input.url);
    const headers = new Headers(init.headers);
    const cookies = jar.get(url.host) || new Map();
    const useCookies = init.credentials !== 'omit';
    if (useCookies && cookies.size > 0) {
      headers.set('cookie', [...cookies].map(([k, v]) => `${k}=${v}`).join('; '));
    }
    const record = { url: url.href, method: (init.method || 'GET').toUpperCase(), credentials: init.credentials, headers, body: init.body };
    requests.push(record);
    const res = await fetch(url, { ...init, headers, signal: init.signal || AbortSignal.timeout(10_000) });
    record.status = res.status;
    if (useCookies) {
      for (const line of res.headers.getSetCookie()) {
        const [pair, ...attrs] = line.split(';');
        const eq = pair.indexOf('=');
        const name = pair.slice(0, eq).trim();
        const value = pair.slice(eq + 1).trim();
        const expired = attrs.some((a) => /^\s*max-age\s*=\s*0\s*$/i.test(a));
        if (expired || value === '') cookies.delete(name);
        else cookies.set(name, value);
      }
      jar.set(url.host, cookies);
    }
    return res;
  };
  return { fetch: jarFetch, jar, requests };
}

let counter = 0;
/** A username no other test uses. */
export function uniqueName(prefix = 'user') {
  counter += 1;
  return `${prefix}${process.pid}x${counter}`;
}

export const PASSWORD = 'correct horse battery';
