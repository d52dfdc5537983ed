// The event loop is never blocked: waits run on one shared waiting thread per database file.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { diagnostics } from '../src/index.js';
import { freshDb, waitFor } from './helpers.js';

describe('the event loop stays free', () => {
  test('a 1 ms timer keeps firing on time while 50 listeners wait, all on one waiting thread', async () => {
    const { db } = freshDb();
    try {
      const ac = new AbortController();
      const got = new Array<number>(50).fill(0);
      const loops = got.map((_, i) =>
        (async () => {
          for await (const _n of db.listen(`ch${i % 5}`, { signal: ac.signal })) got[i]!++;
        })(),
      );
      await waitFor(() => diagnostics().pendingWaits === 50);
      assert.equal(diagnostics().threads, 1);
      // Measure how late a 1 ms timer fires, 300 times in a row, while everything waits.
      const lags: number[] = [];
      for (let i = 0; i < 300; i++) {
        const t = performance.now();
        await new Promise((r) => setTimeout(r, 1));
        lags.push(performance.now() - t - 1);
      }
      lags.sort((a, b) => a - b);
      const p50 = lags[150]!;
      const max = lags[lags.length - 1]!;
      console.log(`timer lag with 50 waiting listeners: p50 ${p50.toFixed(2)} ms, max ${max.toFixed(2)} ms`);
      // A blocked loop would stall for the whole wait (seconds); allow a loaded CI machine plenty.
      assert.ok(p50 < 20, `p50 lag ${p50} ms`);
      assert.ok(max < 500, `max lag ${max} ms`);
      // The listeners were really waiting: each wakes for its channel.
      for (let c = 0; c < 5; c++) db.notify(`ch${c}`, c);
      await waitFor(() => got.every((n) => n === 1));
      ac.abort();
      await Promise.all(loops);
      assert.equal(diagnostics().pendingWaits, 0);
    } finally {
      db.close();
    }
  });
});

describe('cancellation', () => {
  test("the last waiter leaving stops the thread's wait through the extension's cancel key", async () => {
    const { db } = freshDb();
    try {
      const hasCancel = (db.value("SELECT COUNT(*) FROM pragma_function_list WHERE name = 'honker_wait_cancel'") as number) > 0;
      assert.equal(db.features.cancelKeys, hasCancel);
      const before = diagnostics().cancelledWaits;
      const ac = new AbortController();
      const loop = (async () => {
        for await (const _ of db.listen('c', { signal: ac.signal }));
      })();
      await waitFor(() => diagnostics().pendingWaits === 1);
      await new Promise((r) => setTimeout(r, 50)); // the thread is inside honker_wait by now
      ac.abort();
      await loop;
      if (hasCancel) {
        await waitFor(() => diagnostics().cancelledWaits > before, 5000, 'the running wait to be cancelled');
      } else {
        // Without cancel keys the thread's bounded waits end by themselves; it must still park.
        await new Promise((r) => setTimeout(r, 500));
        assert.equal(diagnostics().cancelledWaits, before);
      }
      // A new waiter after the cancel still wakes (the cancel did not stick to the next wait).
      const got: unknown[] = [];
      const ac2 = new AbortController();
      const loop2 = (async () => {
        for await (const n of db.listen('c', { signal: ac2.signal })) {
          got.push(n.payload);
          ac2.abort();
        }
      })();
      await waitFor(() => diagnostics().pendingWaits === 1);
      db.notify('c', 'after cancel');
      await loop2;
      assert.deepEqual(got, ['after cancel']);
    } finally {
      db.close();
    }
  });

  test('closing the database fails its pending waits with db.closed', async () => {
    const { db } = freshDb();
    const it = db.listen('c');
    const next = it.next();
    await waitFor(() => diagnostics().pendingWaits === 1);
    db.close();
    await assert.rejects(next, (e: unknown) => (e as { code?: string }).code === 'db.closed');
    assert.equal(diagnostics().pendingWaits, 0);
  });
});
