// Benchmark: the binding's overhead over the same SQL through the same driver (same
// connection), medians of several rounds, plus cross-process wake latency. Run under either
// runtime: `node dist-test/bench/bench.js`, `bun dist-test/bench/bench.js`.
import { spawn } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { isBun, open, type Database } from '../src/index.js';

const ROUNDS = Number(process.env['BENCH_ROUNDS'] ?? 11);
const N = Number(process.env['BENCH_N'] ?? 2000);
const here = dirname(fileURLToPath(import.meta.url));

function fresh(): Database {
  return open(join(mkdtempSync(join(tmpdir(), 'honker-bench-')), 'bench.db'));
}

/** A raw statement on the driver itself: first column of the first row. */
function raw(db: Database, sql: string): (...args: unknown[]) => unknown {
  const c = db.conn.raw;
  if (isBun) {
    const s = c.prepare(sql);
    return (...a: unknown[]) => s.values(...a)[0][0];
  }
  const s = c.prepare(sql).pluck();
  return (...a: unknown[]) => s.get(...a);
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

interface Case {
  name: string;
  /** ops per run */
  ops: number;
  setup?: (db: Database) => void;
  binding: (db: Database) => void;
  raw: (db: Database) => void;
}

const cases: Case[] = [
  {
    name: 'enqueue, 1 per tx',
    ops: N,
    binding: (db) => {
      const q = db.queue('b');
      for (let i = 0; i < N; i++) q.enqueue({ i, to: 'user@example.com' });
    },
    raw: (db) => {
      const enq = raw(db, 'SELECT honker_enqueue(?, ?)');
      for (let i = 0; i < N; i++) enq('b', JSON.stringify({ i, to: 'user@example.com' }));
    },
  },
  {
    name: 'enqueueMany, 100 per tx',
    ops: N,
    binding: (db) => {
      const q = db.queue('b');
      for (let k = 0; k < N / 100; k++) q.enqueueMany(Array.from({ length: 100 }, (_, i) => ({ i, to: 'user@example.com' })));
    },
    raw: (db) => {
      const enq = raw(db, 'SELECT honker_enqueue_batch(?, ?)');
      for (let k = 0; k < N / 100; k++) JSON.parse(enq('b', JSON.stringify(Array.from({ length: 100 }, (_, i) => ({ i, to: 'user@example.com' })))) as string);
    },
  },
  {
    name: 'claim + ack',
    ops: N,
    setup: (db) => {
      const q = db.queue('b');
      for (let k = 0; k < N / 100; k++) q.enqueueMany(Array.from({ length: 100 }, (_, i) => ({ i })));
    },
    binding: (db) => {
      const q = db.queue('b');
      for (let i = 0; i < N; i++) q.claim('w', 1, 30_000)[0]!.ack();
    },
    raw: (db) => {
      const claim = raw(db, 'SELECT honker_claim(?, ?, CAST(? AS INTEGER), CAST(? AS INTEGER))');
      const ack = raw(db, 'SELECT honker_ack(CAST(? AS INTEGER), CAST(? AS INTEGER))');
      for (let i = 0; i < N; i++) {
        const [j] = JSON.parse(claim('b', 'w', 1, 30_000) as string) as Array<{ id: number; lease_token: number }>;
        ack(j!.id, j!.lease_token);
      }
    },
  },
  {
    name: 'notify',
    ops: N,
    binding: (db) => {
      for (let i = 0; i < N; i++) db.notify('c', { i });
    },
    raw: (db) => {
      const n = raw(db, 'SELECT honker_notify(?, ?)');
      for (let i = 0; i < N; i++) n('c', JSON.stringify({ i }));
    },
  },
];

function time(db: Database, c: Case, which: 'binding' | 'raw'): number {
  c.setup?.(db);
  const t = performance.now();
  c[which](db);
  return ((performance.now() - t) * 1000) / c.ops; // µs per op
}

async function wakeLatency(samples: number): Promise<{ p50: number; p99: number }> {
  const db = fresh();
  const c = spawn(process.execPath, [join(here, '..', 'test', 'child.js'), 'wake-listen', db.filename, 'wake', String(samples)], { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  c.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  while (!out.includes('ready')) await new Promise((r) => setTimeout(r, 5));
  await new Promise((r) => setTimeout(r, 200));
  const exited = new Promise((r) => c.on('exit', r));
  for (let i = 0; i < samples; i++) {
    db.notify('wake', { t: performance.timeOrigin + performance.now() });
    await new Promise((r) => setTimeout(r, 4 + (i % 3)));
  }
  await exited;
  db.close();
  const ns = out.split('\n').slice(1).filter((l) => l.trim() !== '').map((l) => Number(l));
  ns.sort((a, b) => a - b);
  return { p50: ns[Math.floor(ns.length / 2)]!, p99: ns[Math.floor(ns.length * 0.99)]! };
}

async function main(): Promise<void> {
  const runtime = isBun ? `bun ${(process.versions as Record<string, string>)['bun']}` : `node ${process.versions.node}`;
  const rows: string[] = [];
  for (const c of cases) {
    const b: number[] = [];
    const r: number[] = [];
    // Warm up once, then alternate which side goes first.
    {
      const db = fresh();
      time(db, c, 'raw');
      time(db, c, 'binding');
      db.close();
    }
    for (let k = 0; k < ROUNDS; k++) {
      const order: Array<'binding' | 'raw'> = k % 2 === 0 ? ['binding', 'raw'] : ['raw', 'binding'];
      for (const which of order) {
        const db = fresh();
        (which === 'binding' ? b : r).push(time(db, c, which));
        db.close();
      }
    }
    const mb = median(b);
    const mr = median(r);
    rows.push(`| ${runtime} | ${c.name} | ${mb.toFixed(2)} | ${mr.toFixed(2)} | ${(mb / mr).toFixed(2)}x |`);
  }
  const wake = await wakeLatency(300);
  console.log(`\n${runtime}: ${ROUNDS} rounds of ${N} ops, medians, µs per op`);
  console.log('| runtime | operation | binding µs/op | raw SQL µs/op | ratio |');
  console.log('|---|---|---|---|---|');
  for (const row of rows) console.log(row);
  console.log(`| ${runtime} | cross-process wake | p50 ${wake.p50.toFixed(3)} ms | p99 ${wake.p99.toFixed(3)} ms | |`);
}

void main();
