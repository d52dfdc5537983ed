import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { type Job, UnrecoverableError, Worker } from '../src/index.js';
import { count, delay, freshDb, waitFor } from './helpers.js';

describe('Worker', () => {
  test('runs every job once, at most `concurrency` at a time, and saves results', async () => {
    const { db } = freshDb();
    try {
      const q = db.queue<{ n: number }>('q');
      const handles = q.enqueueMany(Array.from({ length: 30 }, (_, n) => ({ n })));
      let running = 0;
      let peak = 0;
      const seen: number[] = [];
      const w = new Worker(q, async (job) => {
        running++;
        peak = Math.max(peak, running);
        await delay(3);
        running--;
        seen.push(job.payload.n);
        return job.payload.n * 2;
      }, { concurrency: 4 });
      const results = await Promise.all(handles.map((h) => h.result({ timeoutMs: 20_000 })));
      await w.close();
      assert.deepEqual(results, handles.map((_, n) => n * 2));
      assert.deepEqual([...seen].sort((a, b) => a - b), [...Array(30).keys()]);
      assert.ok(peak <= 4, `peak ${peak}`);
      assert.ok(peak > 1, 'jobs ran concurrently');
      assert.equal(count(db, 'honker_jobs'), 0);
    } finally {
      db.close();
    }
  });

  test('a thrown error retries after the delay, then dead-letters at maxAttempts', async () => {
    const { db } = freshDb();
    try {
      const q = db.queue('q', { maxAttempts: 3 });
      const h = q.enqueue('flaky');
      const always = q.enqueue('broken');
      const attempts: Record<number, number[]> = {};
      const w = new Worker(q, (job) => {
        (attempts[job.id] ??= []).push(job.attempts);
        if (job.id === always.id || job.attempts < 2) throw new Error(`fail ${job.attempts}`);
        return 'ok';
      }, { retryDelayMs: 10 });
      w.on('error', () => {});
      assert.equal(await h.result({ timeoutMs: 20_000 }), 'ok');
      await assert.rejects(always.result({ timeoutMs: 20_000 }), /died/);
      await w.close();
      assert.deepEqual(attempts[h.id], [1, 2]);
      assert.deepEqual(attempts[always.id], [1, 2, 3]);
      const dead = q.deadLetters();
      assert.equal(dead.length, 1);
      assert.match(dead[0]!.lastError!, /fail 3/);
    } finally {
      db.close();
    }
  });

  test('UnrecoverableError sends the job to the dead letters at once', async () => {
    const { db } = freshDb();
    try {
      const q = db.queue('q', { maxAttempts: 5 });
      const h = q.enqueue('x');
      const w = new Worker(q, () => {
        throw new UnrecoverableError('bad input');
      });
      await assert.rejects(h.result({ timeoutMs: 20_000 }), /died/);
      await w.close();
      assert.equal(q.job(h.id)!.attempts, 1);
    } finally {
      db.close();
    }
  });

  test('heartbeats keep a long job held past its lease: it runs once', async () => {
    const { db } = freshDb();
    try {
      const q = db.queue('q');
      const h = q.enqueue('slow');
      let runs = 0;
      const w1 = new Worker(q, async () => {
        runs++;
        await delay(900);
        return 'done';
      }, { leaseMs: 200 });
      // A second worker that would reclaim the job if its lease lapsed.
      const w2 = new Worker(q, () => {
        runs++;
        return 'stolen';
      }, { leaseMs: 200 });
      assert.equal(await h.result({ timeoutMs: 20_000 }), 'done');
      await Promise.all([w1.close(), w2.close()]);
      assert.equal(runs, 1);
    } finally {
      db.close();
    }
  });

  test('close() waits for running handlers, and past its timeout releases them without using an attempt', async () => {
    const { db } = freshDb();
    try {
      const q = db.queue('q');
      const quick = q.enqueue('quick');
      const stuck = q.enqueue('stuck');
      let aborted = false;
      const started: number[] = [];
      const w = new Worker(q, async (job: Job) => {
        started.push(job.id);
        if (job.id === quick.id) {
          await delay(50);
          return 'q';
        }
        await new Promise<void>((r) => job.signal.addEventListener('abort', () => ((aborted = true), r())));
        return 'never saved';
      }, { concurrency: 2 });
      await waitFor(() => started.length === 2);
      await w.close({ timeoutMs: 300 });
      assert.equal(await quick.result(), 'q');
      assert.equal(aborted, true);
      const info = q.job(stuck.id)!;
      assert.equal(info.state, 'pending');
      assert.equal(info.attempts, 0);
      // The aborted handler honours its signal and unwinds.
      await waitFor(() => w.running === 0);
    } finally {
      db.close();
    }
  });

  test('aborting the signal closes the worker', async () => {
    const { db } = freshDb();
    try {
      const q = db.queue('q');
      const ac = new AbortController();
      let ran = 0;
      const w = new Worker(q, () => void ran++, { signal: ac.signal });
      q.enqueue(1);
      await waitFor(() => ran === 1);
      ac.abort();
      await w.close();
      q.enqueue(2);
      await delay(100);
      assert.equal(ran, 1);
      assert.equal(q.stats().pending, 1);
    } finally {
      db.close();
    }
  });

  test('a handler over timeoutMs is aborted and retried', async () => {
    const { db } = freshDb();
    try {
      const q = db.queue('q');
      const h = q.enqueue('x');
      const w = new Worker(q, async (job) => {
        if (job.attempts === 1) await new Promise((r) => job.signal.addEventListener('abort', r));
        return job.attempts;
      }, { timeoutMs: 50, retryDelayMs: 0 });
      w.on('error', () => {});
      assert.equal(await h.result({ timeoutMs: 20_000 }), 2);
      await w.close();
      assert.match(q.job(h.id)?.lastError ?? 'acked', /acked|longer than/);
    } finally {
      db.close();
    }
  });

  test('a delayed job runs when due, woken by its run_at rather than a poll', async () => {
    const { db } = freshDb();
    try {
      const q = db.queue('q');
      const ran: number[] = [];
      const w = new Worker(q, () => void ran.push(Date.now()));
      const t0 = Date.now();
      q.enqueue('soon', { delayMs: 150 });
      await waitFor(() => ran.length === 1);
      await w.close();
      assert.ok(ran[0]! - t0 >= 140, `ran after ${ran[0]! - t0} ms`);
    } finally {
      db.close();
    }
  });

  test('job.complete applies the effect and the ack in one transaction', async () => {
    const { db } = freshDb();
    try {
      db.conn.exec('CREATE TABLE effects (job_id INTEGER)');
      const q = db.queue('q');
      const h = q.enqueue('e');
      const w = new Worker(q, (job) => {
        job.complete((tx) => tx.run('INSERT INTO effects VALUES (?)', job.id));
      });
      assert.equal(await h.result({ timeoutMs: 20_000 }), undefined);
      await w.close();
      assert.equal(count(db, 'effects'), 1);
      // A stale holder's effect is rolled back with its refused ack.
      const h2 = q.enqueue('f');
      const [j] = q.claim('w', 1, 1);
      await delay(20);
      const [again] = q.claim('w2', 1);
      assert.equal(again!.id, h2.id);
      assert.throws(() => j!.complete((tx) => tx.run('INSERT INTO effects VALUES (-1)')), /lease/);
      assert.equal(count(db, 'effects', 'job_id = -1'), 0);
    } finally {
      db.close();
    }
  });
});
