// honker interop driver for the Node.js/Bun binding (bindings/node), one source for both
// runtimes: `node driver.mjs DB` or `bun driver.mjs DB`. Speaks interop/README.md's protocol,
// through the binding's public API wherever it has one.
import { createInterface } from 'node:readline';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const honker = await import(join(root, 'bindings', 'node', 'dist', 'esm', 'index.js'));
const { open, HonkerError, PayloadError, Job } = honker;

const path = process.argv[2];
let db = null;
const jobs = new Map(); // `${id}:${token}` -> Job claimed by this actor

function conn() {
  db ??= open(path);
  return db;
}

class DriverError extends Error {
  constructor(code, message) {
    super(message);
    this.code = code;
  }
}

/** A payload arg is JSON text; the binding takes values. */
function payload(text) {
  if (typeof text !== 'string') throw new DriverError('driver.bad_args', 'payload must be JSON text');
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new PayloadError('payload.not_json', `payload is not JSON: ${e.message}`);
  }
}

const camel = (s) => s.replace(/_([a-z])/g, (_, c) => c.toUpperCase());
const ENQUEUE = { delay_ms: 'delayMs', run_at_ms: 'runAt', priority: 'priority', max_attempts: 'maxAttempts', dedup_key: 'dedupKey', expires_at_ms: 'expiresAt', expires_in_ms: 'expiresInMs' };
const SCHEDULE = { end_at_ms: 'endAt' };
function renamed(options, table) {
  if (options === undefined || options === null) return undefined;
  const out = {};
  for (const [k, v] of Object.entries(options)) out[table?.[k] ?? camel(k)] = v;
  return out;
}

function heldJob(a) {
  const key = `${a.job_id}:${a.lease_token}`;
  return jobs.get(key) ?? new Job(conn(), { id: a.job_id, queue: a.queue ?? '', payload: null, attempts: 0, max_attempts: 0, lease_token: String(a.lease_token), lease_expires_ms: 0, priority: 0 });
}

// A value to print, or raw JSON text to splice verbatim (what honker returned).
const raw = (text) => ({ raw: text });

function claimedText(list) {
  return `[${list
    .map((j) => {
      jobs.set(`${j.id}:${j.leaseToken}`, j);
      const o = JSON.stringify({ id: j.id, queue: j.queue, payload: j.payload, attempts: j.attempts, max_attempts: j.maxAttempts, lease_token: 0, lease_expires_ms: j.leaseExpiresAt, priority: j.priority });
      return o.replace('"lease_token":0', `"lease_token":${j.leaseToken}`);
    })
    .join(',')}]`;
}

function sqlRows(sql) {
  const c = conn().conn.raw;
  const st = c.prepare(sql);
  if (process.versions.bun) return st.all();
  if (st.reader) return st.all();
  st.run();
  return [];
}

const ops = {
  open: () => (conn(), null),
  close: () => {
    db?.close();
    db = null;
    jobs.clear();
    return null;
  },
  begin: () => (conn().conn.exec('BEGIN IMMEDIATE'), null),
  commit: () => (conn().conn.exec('COMMIT'), null),
  rollback: () => (conn().conn.exec('ROLLBACK'), null),
  sql: (a) => sqlRows(a.sql),
  queue_configure: (a) => conn().queue(a.queue).configure(renamed(a.options)),
  enqueue: (a) => conn().queue(a.queue).enqueue(payload(a.payload), renamed(a.options, ENQUEUE)).id,
  claim: (a) => raw(claimedText(conn().queue(a.queue).claim(a.worker, a.n, a.lease_ms ?? undefined))),
  ack: (a) => (heldJob(a).ack(), 1),
  retry: (a) => {
    const r = heldJob(a).retry({ delayMs: a.delay_ms ?? undefined, error: a.error ?? undefined });
    return r.state === 'dead' ? { state: 'dead' } : { state: 'retrying', run_at_ms: r.runAt };
  },
  fail: (a) => (heldJob(a).fail(a.error), 1),
  job: (a) => raw(conn().get('SELECT honker_job(CAST(? AS INTEGER))', a.job_id) ?? 'null'),
  dead_requeue: (a) => (conn().queue(a.queue ?? 'default').requeueDead(a.job_id) ? 1 : 0),
  result_save: (a) => {
    payload(a.value);
    return conn().get('SELECT honker_result_save(CAST(? AS INTEGER), ?, CAST(? AS INTEGER))', a.job_id, a.value, a.ttl_ms ?? null);
  },
  result_get: (a) => raw(conn().get('SELECT honker_result_get(CAST(? AS INTEGER))', a.job_id) ?? 'null'),
  notify: (a) => conn().notify(a.channel, payload(a.payload)),
  listen: (a) => raw(conn().get('SELECT honker_listen(?, CAST(? AS INTEGER), CAST(? AS INTEGER))', a.channel, a.after_id, a.limit)),
  listen_wait: async (a) => {
    // Wait through the binding's listener (on its shared waiting thread), then read the batch.
    const signal = AbortSignal.timeout(Math.max(0, a.timeout_ms));
    for await (const _ of conn().listen(a.channel, { after: a.after_id, signal })) break;
    return raw(conn().get('SELECT honker_listen(?, CAST(? AS INTEGER), CAST(? AS INTEGER))', a.channel, a.after_id, a.limit));
  },
  publish: (a) => conn().stream(a.topic).publish(payload(a.payload), a.key == null ? {} : { key: a.key }),
  read: (a) =>
    conn()
      .stream(a.topic)
      .read({ after: a.after_offset, limit: a.limit })
      .map((e) => ({ offset: e.offset, topic: e.topic, key: e.key, payload: e.payload, created_ms: e.createdAt })),
  commit_offset: (a) => (conn().stream(a.topic).commit(a.consumer, a.offset) ? 1 : 0),
  offset: (a) => conn().stream(a.topic).offset(a.consumer),
  schedule: (a) => conn().cron.schedule(a.name, a.cron, { ...renamed(a.options, SCHEDULE), queue: a.queue, payload: payload(a.payload) }),
  cron_next: (a) => conn().cron.next(a.cron, { after: a.after_ms, tz: a.tz ?? 'UTC', n: 1 })[0] ?? null,
  cron_tick: (a) => conn().cron.tick(a.now_ms).map((f) => ({ schedule: f.schedule, fire_ms: f.fireAt, job_id: f.jobId })),
};

function errorOf(e) {
  if (e instanceof HonkerError || e instanceof DriverError) return { code: e.code, message: e.message };
  const msg = e instanceof Error ? e.message : String(e);
  const code = e?.code;
  if (code === 'SQLITE_BUSY' || /database is locked/.test(msg)) return { code: 'sqlite.busy', message: msg };
  if (typeof code === 'string' && code.startsWith('SQLITE')) return { code: 'sqlite.error', message: msg };
  if (e instanceof TypeError || e instanceof RangeError) return { code: 'driver.bad_args', message: msg };
  return { code: 'driver.failed', message: msg };
}

const out = (s) => process.stdout.write(`${s}\n`);
const rl = createInterface({ input: process.stdin, crlfDelay: Infinity });
for await (const line of rl) {
  if (line.trim() === '') continue;
  let req;
  try {
    // Lease tokens pass 2^53: keep their digits exact as strings.
    req = JSON.parse(line.replace(/"lease_token":(-?\d+)/g, '"lease_token":"$1"'));
  } catch (e) {
    out(JSON.stringify({ id: null, ok: false, error: { code: 'driver.bad_args', message: String(e) } }));
    continue;
  }
  const op = ops[req.op];
  if (op === undefined) {
    out(JSON.stringify({ id: req.id, ok: false, error: { code: 'driver.unsupported_op', message: `op ${req.op}` } }));
    continue;
  }
  try {
    const v = await op(req.args ?? {});
    const value = v !== null && typeof v === 'object' && 'raw' in v ? v.raw : JSON.stringify(v ?? null);
    out(`{"id":${JSON.stringify(req.id)},"ok":true,"value":${value}}`);
  } catch (e) {
    out(JSON.stringify({ id: req.id, ok: false, error: errorOf(e) }));
  }
}
db?.close();
process.exit(0);
