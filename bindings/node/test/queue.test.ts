import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { ArgumentError, JobFailedError, LeaseLostError, WaitTimeoutError } from '../src/index.js';
import { count, freshDb } from './helpers.js';

describe('queue', () => {
  test('enqueue options: delay, runAt, priority, maxAttempts, dedupKey, expiry', () => {
    const { db } = freshDb();
    try {
      const q = db.queue('q');
      const later = q.enqueue({ k: 'later' }, { delayMs: 60_000 });
      const at = q.enqueue({ k: 'at' }, { runAt: new Date(Date.now() + 60_000) });
      const low = q.enqueue({ k: 'low' }, { priority: 1 });
      const high = q.enqueue({ k: 'high' }, { priority: 9, maxAttempts: 7 });
      const d1 = q.enqueue({ k: 'dedup' }, { dedupKey: 'once' });
      const d2 = q.enqueue({ k: 'dedup again' }, { dedupKey: 'once' });
      const exp = q.enqueue({ k: 'expiring' }, { expiresAt: Date.now() + 60_000 });
      assert.equal(d1.id, d2.id);
      assert.equal(q.job(later.id)!.state, 'scheduled');
      assert.equal(q.job(at.id)!.state, 'scheduled');
      assert.equal(q.job(high.id)!.maxAttempts, 7);
      assert.equal(q.job(d1.id)!.dedupKey, 'once');
      assert.ok(q.job(exp.id)!.expiresAt! > Date.now());
      const s = q.stats();
      assert.equal(s.pending, 4);
      assert.equal(s.scheduled, 2);
      const claimed = q.claim('w', 10);
      assert.deepEqual(claimed.map((j) => j.id), [high.id, low.id, d1.id, exp.id]);
      assert.equal(claimed[0]!.attempts, 1);
      assert.equal(claimed[0]!.maxAttempts, 7);
      assert.deepEqual(claimed[0]!.data, { k: 'high' });
    } finally {
      db.close();
    }
  });

  test('enqueueMany is one all-or-nothing statement', () => {
    const { db } = freshDb();
    try {
      const q = db.queue('q');
      const hs = q.enqueueMany([{ n: 1 }, { n: 2 }, { n: 3 }], { priority: 2 });
      assert.equal(hs.length, 3);
      assert.ok(hs[0]!.id < hs[1]!.id && hs[1]!.id < hs[2]!.id);
      assert.throws(() => q.enqueueMany([{ n: 4 }, Number.NaN as unknown as { n: number }]), (e: unknown) => (e as { code?: string }).code === 'payload.not_json');
      assert.equal(q.stats().pending, 3);
      assert.equal(q.job(hs[1]!.id)!.priority, 2);
    } finally {
      db.close();
    }
  });

  test('claim, ack, retry, fail, release, heartbeat; a stale lease token is refused', () => {
    const { db } = freshDb();
    try {
      const q = db.queue('q', { maxAttempts: 2 });
      const ids = q.enqueueMany(['a', 'b', 'c', 'd']).map((h) => h.id);
      const [a, b, c, d] = q.claim('w', 4, 10_000);
      assert.deepEqual([a!.id, b!.id, c!.id, d!.id], ids);
      assert.equal(q.stats().running, 4);
      a!.ack();
      const r = b!.retry({ delayMs: 0, error: 'boom' });
      assert.equal(r.state, 'retrying');
      c!.fail('bad');
      const before = a!.leaseExpiresAt;
      assert.ok(d!.heartbeat(60_000) >= before);
      d!.release();
      assert.throws(() => a!.ack(), (e: unknown) => e instanceof LeaseLostError && e.code === 'queue.lease_lost');
      assert.throws(() => d!.heartbeat(1000), LeaseLostError);
      assert.equal(q.job(a!.id), null);
      assert.equal(q.job(b!.id)!.lastError, 'boom');
      assert.equal(q.job(c!.id)!.state, 'dead');
      assert.equal(q.job(d!.id)!.attempts, 0);
      const again = q.claim('w', 10);
      assert.deepEqual(again.map((j) => j.id).sort(), [b!.id, d!.id].sort());
      const b2 = again.find((j) => j.id === b!.id)!;
      assert.equal(b2.attempts, 2);
      assert.equal(b2.retry({ error: 'boom 2' }).state, 'dead');
      assert.equal(q.ackMany(again.filter((j) => j.id === d!.id)), 1);
    } finally {
      db.close();
    }
  });

  test('dead letters: list, requeue, purge', () => {
    const { db } = freshDb();
    try {
      const q = db.queue('q');
      const ids = q.enqueueMany(['x', 'y', 'z']).map((h) => h.id);
      for (const j of q.claim('w', 3)) j.fail(`fail ${j.payload}`);
      const dead = q.deadLetters();
      assert.equal(dead.length, 3);
      assert.deepEqual(dead.map((d) => d.id).sort(), [...ids].sort());
      assert.equal(dead.find((d) => d.id === ids[0])!.lastError, 'fail x');
      assert.equal(q.stats().dead, 3);
      assert.equal(q.requeueDead(ids[0]!), true);
      assert.equal(q.requeueDead(ids[0]!), false);
      assert.equal(q.stats().pending, 1);
      assert.equal(q.purgeDead({ olderThanMs: 60_000 }), 0);
      assert.equal(q.purgeDead(), 2);
      assert.equal(q.deadLetters().length, 0);
      assert.equal(q.requeueAllDead(), 0);
    } finally {
      db.close();
    }
  });

  test('cancel, nextDue and job()', () => {
    const { db } = freshDb();
    try {
      const q = db.queue('q');
      const h = q.enqueue('later', { delayMs: 5000 });
      const due = q.nextDue();
      assert.ok(due !== null && due > Date.now());
      assert.equal(h.info()!.state, 'scheduled');
      assert.equal(q.cancel(h.id), true);
      assert.equal(q.job(h.id), null);
      assert.equal(q.nextDue(), null);
    } finally {
      db.close();
    }
  });

  test('result(): the saved value, undefined without one, JobFailedError for a dead job, WaitTimeoutError', async () => {
    const { db } = freshDb();
    try {
      const q = db.queue('q');
      const [h1, h2, h3, h4] = q.enqueueMany([1, 2, 3, 4]);
      const [j1, j2, j3] = q.claim('w', 3);
      j1!.ack({ doubled: 2 });
      j2!.ack();
      j3!.fail('nope');
      assert.deepEqual(await h1!.result(), { doubled: 2 });
      assert.equal(await h2!.result(), undefined);
      await assert.rejects(h3!.result(), (e: unknown) => e instanceof JobFailedError && e.code === 'queue.job_dead');
      await assert.rejects(h4!.result({ timeoutMs: 50 }), (e: unknown) => e instanceof WaitTimeoutError && e.code === 'wait.timeout');
      // A result that arrives while result() waits.
      const pending = h4!.result({ timeoutMs: 20_000 });
      setTimeout(() => q.claim('w', 1)[0]!.ack('late'), 30);
      assert.equal(await pending, 'late');
    } finally {
      db.close();
    }
  });

  test('queue options are stored and unknown ones refused', () => {
    const { db } = freshDb();
    try {
      const opts = db.queue('q').configure({ leaseMs: 1234, maxAttempts: 4, paused: false });
      assert.equal(opts['lease_ms'], 1234);
      assert.equal(opts['max_attempts'], 4);
      assert.throws(() => db.queue('q', { bogus: 1 } as never), (e: unknown) => e instanceof ArgumentError && e.code === 'queue.unknown_option');
      assert.equal(count(db, 'honker_jobs'), 0);
    } finally {
      db.close();
    }
  });
});
