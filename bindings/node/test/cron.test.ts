import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { CronError, Scheduler } from '../src/index.js';
import { count, freshDb, waitFor } from './helpers.js';

describe('cron', () => {
  test('schedule, list, pause, resume, unschedule, next, tick', () => {
    const { db } = freshDb();
    try {
      const next = db.cron.schedule('nightly', '0 3 * * *', { queue: 'reports', payload: { kind: 'daily' }, tz: 'Europe/Paris' });
      assert.ok(next !== null && next > Date.now());
      const [s] = db.cron.list({ upcoming: 3 });
      assert.equal(s!.name, 'nightly');
      assert.equal(s!.tz, 'Europe/Paris');
      assert.deepEqual(s!.payload, { kind: 'daily' });
      assert.equal(s!.upcoming.length, 3);
      db.cron.pause('nightly');
      assert.equal(db.cron.list()[0]!.paused, true);
      assert.equal(db.cron.nextFire(), null);
      db.cron.resume('nightly');
      assert.equal(db.cron.nextFire(), next);
      // Ticking as of the next fire time fires it once, into the queue.
      const fires = db.cron.tick(next);
      assert.deepEqual(fires.map((f) => [f.schedule, f.fireAt]), [['nightly', next]]);
      assert.equal(db.cron.tick(next).length, 0);
      assert.equal(db.queue('reports').stats().pending, 1);
      const t0 = Date.UTC(2030, 0, 1);
      assert.deepEqual(db.cron.next('*/15 * * * *', { after: t0, n: 2 }), [t0 + 15 * 60_000, t0 + 30 * 60_000]);
      assert.equal(db.cron.unschedule('nightly'), true);
      assert.equal(db.cron.unschedule('nightly'), false);
    } finally {
      db.close();
    }
  });

  test('a bad expression or zone is a CronError and writes nothing', () => {
    const { db } = freshDb();
    try {
      assert.throws(() => db.cron.schedule('x', 'not cron', { queue: 'q' }), (e: unknown) => e instanceof CronError && e.code === 'cron.bad_expression');
      assert.throws(() => db.cron.schedule('x', '* * * * *', { queue: 'q', tz: 'Mars/Olympus' }), (e: unknown) => e instanceof CronError && e.code === 'cron.unknown_zone');
      assert.throws(() => db.cron.pause('nope'), (e: unknown) => e instanceof CronError && e.code === 'cron.not_found');
      assert.equal(count(db, 'honker_schedules'), 0);
    } finally {
      db.close();
    }
  });

  test('the Scheduler fires due schedules into the queue and stops on abort', async () => {
    const { db } = freshDb();
    try {
      const ac = new AbortController();
      const fired: number[] = [];
      const sched = new Scheduler(db, { signal: ac.signal, onFire: (f) => fired.push(f.fireAt) });
      // Added after the scheduler started: it must notice the new schedule without a poll.
      db.cron.schedule('fast', '@every 100ms', { queue: 'ticks', payload: 'tick' });
      await waitFor(() => fired.length >= 3);
      ac.abort();
      await sched.stopped;
      const n = db.queue('ticks').stats().pending;
      assert.ok(n >= 3, `${n} jobs`);
      assert.ok(fired.every((t) => t % 100 === 0));
      assert.equal(new Set(fired).size, fired.length);
    } finally {
      db.close();
    }
  });
});
