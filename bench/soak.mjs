// Soak: CLIENTS concurrent browsers (default 200) for SECONDS (default 60) against one
// `vestibule serve` on the default store (cached SQLite), each mixing signup, login, me, session
// writes, access-token calls and logout through the JS client. Checks: zero 5xx, zero lost
// session writes (each client's counter must equal its own successful increments since login),
// and the server's RSS: idle SETTLE (3) s after it answers, again SETTLE s after one warm-up
// client has done each operation once (code first run, SQLite's caches, prepared statements),
// every second under load, then after 10 s and 10 + QUIET_MORE (50) s of quiet. ROUNDS (1)
// repeats the load and its quiet on the same server. Loopback only; every loop is bounded by the
// deadline and by MAX_ITERATIONS per client.
//
// Run: cargo build --release -p vestibule-cli && npm ci &&
//      TEST_VESTIBULE_BIN=target/release/vestibule node bench/soak.mjs
import { readFileSync } from 'node:fs';

import { createClient } from '../clients/js/src/index.js';
import { cookieJarFetch, startServer } from '../clients/js/test/support.js';

const CLIENTS = Number(process.env.CLIENTS || 200);
const SECONDS = Number(process.env.SECONDS || 60);
const MAX_ITERATIONS = 100_000;
const QUIET_MORE = Number(process.env.QUIET_MORE || 50);
const SETTLE = Number(process.env.SETTLE || 3);
// Rounds of load on the same server, each followed by its quiet: the readings after each show
// whether what stays is a plateau (the same after every round) or grows.
const ROUNDS = Number(process.env.ROUNDS || 1);
const PASSWORD = 'soak password 1';

const server = await startServer({
  toml: (port) => `listen = "127.0.0.1:${port}"\n[auth]\nsignup = true\n`,
});
const rssKb = () => {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${server.pid}/status`, 'utf8'));
  return m ? Number(m[1]) : NaN;
};
/** Anonymous resident memory (heap, caches), as against mapped files (code, SQLite). */
const anonKb = () => {
  const rollup = readFileSync(`/proc/${server.pid}/smaps_rollup`, 'utf8');
  const m = /^Anonymous:\s+(\d+) kB/m.exec(rollup);
  return m ? Number(m[1]) : NaN;
};
const statuses = new Map();
// Every 5xx of the run, `busy` ones included (they are taken off at the end).
let allStatuses5xx = 0;
let lostWrites = 0;
let failures = 0;
// 503 `busy`: the server's Argon2 memory budget turned a login or signup away with Retry-After
// (backpressure by design, not a failure); the soak waits and retries as a client should.
let busy = 0;
const BUSY_ATTEMPTS = 30;

/** Runs a password operation, waiting out `busy` answers (bounded). */
async function withBusyRetry(op) {
  for (let attempt = 1; ; attempt += 1) {
    try {
      return await op();
    } catch (e) {
      if (e.status !== 503 || e.code !== 'busy' || attempt >= BUSY_ATTEMPTS) throw e;
      busy += 1;
      await new Promise((r) => setTimeout(r, 500 + Math.random() * 1000));
    }
  }
}
const ops = { signup: 0, login: 0, me: 0, write: 0, token: 0, logout: 0 };

/** Counts every answer's status; the client's own fetch goes through here. */
function counting(fetchImpl) {
  return async (input, init) => {
    const res = await fetchImpl(input, init);
    statuses.set(res.status, (statuses.get(res.status) || 0) + 1);
    if (res.status >= 500) allStatuses5xx += 1;
    return res;
  };
}

async function browser(i, deadline, iterations = MAX_ITERATIONS) {
  const jar = cookieJarFetch();
  const client = createClient({ baseUrl: server.url, transport: 'cookie', fetch: counting(jar.fetch) });
  const credentials = { username: `soak${i}`, password: PASSWORD };
  await withBusyRetry(() => client.signup(credentials));
  ops.signup += 1;
  let writes = 0;
  for (let n = 1; n <= iterations && Date.now() < deadline; n += 1) {
    try {
      if (n % 25 === 0) {
        await client.logout();
        ops.logout += 1;
        await withBusyRetry(() => client.login(credentials));
        ops.login += 1;
        writes = 0; // a new session starts its own counter
      } else if (n % 10 === 0) {
        const token = await client.tokens.create({ name: `soak-${n}` });
        await client.tokens.list();
        await client.tokens.revoke(token.id);
        ops.token += 1;
      } else if (n % 2 === 0) {
        const body = await client.request('/demo/counter', { method: 'POST' });
        writes += 1;
        ops.write += 1;
        if (body.counter !== writes) {
          lostWrites += 1;
          writes = body.counter;
        }
      } else {
        await client.me();
        ops.me += 1;
      }
    } catch (e) {
      failures += 1;
      if (failures <= 5) console.error(`client ${i}: ${e.code || ''} ${e.message}`);
    }
  }
}

// Idle is read SETTLE s after the server answers, as bench/memory.sh does: start-up's own
// allocations are freed and purged by then (alloc.rs purges every 2 s).
await new Promise((r) => setTimeout(r, SETTLE * 1000));
const rssStart = rssKb();
const anonStart = anonKb();
// One client through every operation once (25 iterations: me, writes, tokens, logout and
// login), so that what a server holds after its first use is not counted as the load's growth.
await browser('warm', Date.now() + 60_000, 25);
for (const op of Object.keys(ops)) ops[op] = 0;
statuses.clear();
await new Promise((r) => setTimeout(r, SETTLE * 1000));
const rssWarm = rssKb();
const anonWarm = anonKb();
const mb = (kb) => (kb / 1024).toFixed(1);
const growth = (kb, from) => `${(((kb - from) / from) * 100).toFixed(0)} %`;
const after = [];
for (let round = 1; round <= ROUNDS; round += 1) {
  const samples = [];
  const deadline = Date.now() + SECONDS * 1000;
  const sampler = setInterval(() => samples.push(rssKb()), 1000);
  const started = Date.now();
  // Each round's clients are new users: the load is the same every round.
  await Promise.all(Array.from({ length: CLIENTS }, (_, i) => browser(round === 1 ? i : `${round}x${i}`, deadline)));
  const elapsed = (Date.now() - started) / 1000;
  clearInterval(sampler);
  const rssEnd = rssKb();
  await new Promise((r) => setTimeout(r, 10_000));
  const rssQuiet = rssKb();
  // Where the rest sits: anonymous memory (heap, caches) against mapped files (code, SQLite).
  const anonQuiet = anonKb();
  const fileQuiet = rssQuiet - anonQuiet;
  // mimalloc gives freed pages back after a delay and on the next allocation in their arena: a
  // later reading shows what stays.
  await new Promise((r) => setTimeout(r, QUIET_MORE * 1000));
  const rssLater = rssKb();
  after.push(rssLater);

  const total = [...statuses.values()].reduce((a, b) => a + b, 0);
  const quarter = samples[Math.floor(samples.length / 4)] ?? rssStart;
  console.log(`${ROUNDS > 1 ? `round ${round}: ` : ''}soak: ${CLIENTS} clients, ${elapsed.toFixed(1)} s, ${total} requests (${(total / elapsed).toFixed(0)} req/s)`);
  console.log(`operations: ${JSON.stringify(ops)}`);
  console.log(`statuses: ${JSON.stringify(Object.fromEntries(statuses))}`);
  for (const op of Object.keys(ops)) ops[op] = 0;
  statuses.clear();
  console.log(`RSS MB: start ${mb(rssStart)} (anonymous ${mb(anonStart)}), after the warm-up ${mb(rssWarm)} (anonymous ${mb(anonWarm)}), at 25% ${mb(quarter)}, peak ${mb(Math.max(...samples))}, end ${mb(rssEnd)}, after 10 s quiet ${mb(rssQuiet)} (anonymous ${mb(anonQuiet)}, file-backed ${mb(fileQuiet)}), after ${10 + QUIET_MORE} s ${mb(rssLater)}`);
  console.log(`growth after ${10 + QUIET_MORE} s: ${growth(rssLater, rssWarm)} over the warm idle, ${growth(rssLater, rssStart)} over the fresh start`);
}
await server.stop();
if (ROUNDS > 1) {
  console.log(`after each round (MB): ${after.map(mb).join(', ')}; last over first ${growth(after[after.length - 1], after[0])}`);
}
const fivexx = allStatuses5xx - busy;
console.log(`busy (503, retried): ${busy}`);
console.log(`5xx other than busy: ${fivexx}, lost session writes: ${lostWrites}, client-side failures: ${failures}`);
process.exit(fivexx === 0 && lostWrites === 0 && failures === 0 ? 0 : 1);
