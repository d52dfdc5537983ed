import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { diagnostics } from '../src/index.js';
import { count, freshDb, waitFor } from './helpers.js';

describe('streams', () => {
  test('publish and read after an offset, with keys', () => {
    const { db } = freshDb();
    try {
      const s = db.stream('orders');
      const o1 = s.publish({ id: 1 }, { key: 'a' });
      const o2 = s.publish({ id: 2 });
      assert.ok(o2 > o1);
      const all = s.read();
      assert.deepEqual(all.map((e) => [e.offset, e.key, e.payload]), [[o1, 'a', { id: 1 }], [o2, null, { id: 2 }]]);
      assert.deepEqual(s.read({ after: o1 }).map((e) => e.offset), [o2]);
    } finally {
      db.close();
    }
  });

  test('subscribe replays, goes live, auto-commits processed events and resumes after them', async () => {
    const { db } = freshDb();
    try {
      const s = db.stream('t');
      const offsets = [s.publish(1), s.publish(2)];
      const ac = new AbortController();
      const got: number[] = [];
      const done = (async () => {
        for await (const ev of s.subscribe('c1', { signal: ac.signal })) {
          got.push(ev.payload as number);
          if (got.length === 4) break;
        }
      })();
      await waitFor(() => got.length === 2);
      await waitFor(() => diagnostics().pendingWaits > 0);
      offsets.push(s.publish(3), s.publish(4));
      await done;
      assert.deepEqual(got, [1, 2, 3, 4]);
      // The event in hand when the loop broke is delivered again; the ones before it are not.
      assert.equal(s.offset('c1'), offsets[2]);
      const again: number[] = [];
      for await (const ev of s.subscribe('c1')) {
        again.push(ev.payload as number);
        break;
      }
      assert.deepEqual(again, [4]);
      const lag = s.consumers().find((c) => c.consumer === 'c1')!;
      assert.equal(lag.offset, offsets[2]);
      assert.equal(lag.lagEvents, 1);
    } finally {
      db.close();
    }
  });

  test('manual commit in the transaction that applies the effect', async () => {
    const { db } = freshDb();
    try {
      db.conn.exec('CREATE TABLE totals (n INTEGER)');
      const s = db.stream('t');
      s.publish(5);
      s.publish(7);
      let seen = 0;
      for await (const ev of s.subscribe('summer', { autoCommit: false })) {
        seen++;
        if (ev.payload === 7) {
          // A failed effect rolls back its commit too.
          assert.throws(() =>
            db.transaction(() => {
              db.run('INSERT INTO totals VALUES (?)', ev.payload);
              ev.commit();
              throw new Error('crash');
            }),
          );
          break;
        }
        db.transaction(() => {
          db.run('INSERT INTO totals VALUES (?)', ev.payload);
          ev.commit();
        });
      }
      assert.equal(seen, 2);
      assert.equal(db.value('SELECT SUM(n) FROM totals'), 5);
      const next = s.read({ after: s.offset('summer')! });
      assert.deepEqual(next.map((e) => e.payload), [7]);
    } finally {
      db.close();
    }
  });

  test('trim respects options and refuses unknown ones', () => {
    const { db } = freshDb();
    try {
      const s = db.stream('t');
      const offs = [s.publish(1), s.publish(2), s.publish(3)];
      assert.equal(s.trim({ through: offs[0]! }), 1);
      assert.deepEqual(s.read({ after: offs[0]! }).map((e) => e.payload), [2, 3]);
      assert.throws(() => s.read({ after: 0 }), (e: unknown) => (e as { code?: string }).code === 'stream.trimmed');
      assert.throws(() => s.trim({ bogus: 1 } as never), (e: unknown) => (e as { code?: string }).code === 'options.unknown');
      assert.equal(count(db, 'honker_streams'), 2);
    } finally {
      db.close();
    }
  });
});
