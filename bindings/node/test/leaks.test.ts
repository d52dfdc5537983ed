// Long uptime: 100k listen/abort cycles and a long-running worker leave no timers, abort
// listeners or waits behind, and the heap stays flat.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { diagnostics, Worker } from '../src/index.js';
import { freshDb, gc, waitFor } from './helpers.js';

function heapMB(): number {
  gc();
  return process.memoryUsage().heapUsed / 1e6;
}

/** An AbortSignal whose live 'abort' listeners are counted (a `once` listener ends when it fires). */
function countedSignal(): { ac: AbortController; live: () => number } {
  const ac = new AbortController();
  const s = ac.signal;
  const live = new Map<unknown, boolean>();
  s.addEventListener('abort', () => {
    for (const [l, once] of live) if (once) live.delete(l);
  });
  const add = s.addEventListener.bind(s);
  const remove = s.removeEventListener.bind(s);
  s.addEventListener = ((type: string, l: any, o?: any) => {
    if (type === 'abort') live.set(l, typeof o === 'object' && o !== null && o.once === true);
    add(type, l, o);
  }) as typeof s.addEventListener;
  s.removeEventListener = ((type: string, l: any, o?: any) => {
    if (type === 'abort') live.delete(l);
    remove(type, l, o);
  }) as typeof s.removeEventListener;
  return { ac, live: () => live.size };
}

describe('no leaks over a long uptime', () => {
  test('100k listen/abort cycles leave nothing behind and keep the heap flat', async () => {
    const { db } = freshDb();
    try {
      const cycle = async () => {
        const ac = new AbortController();
        const it = db.listen('idle', { signal: ac.signal });
        const next = it.next();
        ac.abort();
        assert.equal((await next).done, true);
      };
      for (let i = 0; i < 2000; i++) await cycle();
      const base = heapMB();
      for (let i = 0; i < 100_000; i++) await cycle();
      const grown = heapMB() - base;
      const d = diagnostics();
      console.log(`100k listen/abort cycles: heap grew ${grown.toFixed(1)} MB; ${JSON.stringify(d)}`);
      assert.equal(d.pendingWaits, 0);
      assert.equal(d.abortListeners, 0);
      assert.ok(d.timers <= 1, `${d.timers} timers left`);
      assert.ok(grown < 20, `heap grew ${grown} MB`);
    } finally {
      db.close();
    }
  });

  test('one long-lived signal across many wakes keeps at most one listener on it', async () => {
    const { db } = freshDb();
    try {
      const { ac, live } = countedSignal();
      let n = 0;
      let peak = 0;
      const done = (async () => {
        for await (const _ of db.listen('busy', { signal: ac.signal })) {
          peak = Math.max(peak, live());
          if (++n === 3000) break;
        }
      })();
      for (let i = 0; i < 3000; i++) {
        db.notify('busy', i);
        if (i % 10 === 0) await new Promise((r) => setImmediate(r));
      }
      await done;
      assert.ok(peak <= 1, `peak ${peak} listeners`);
      assert.equal(live(), 0);
    } finally {
      db.close();
    }
  });

  test('a long-running worker keeps timers, listeners and heap flat', async () => {
    const { db } = freshDb();
    try {
      const q = db.queue('q');
      const { ac, live } = countedSignal();
      let done = 0;
      const w = new Worker(q, () => void done++, { signal: ac.signal, heartbeatMs: 5 });
      const round = async (k: number) => {
        const target = done + k;
        for (let i = 0; i < k; i++) {
          q.enqueue(i);
          if (i % 50 === 0) await new Promise((r) => setImmediate(r));
        }
        await waitFor(() => done >= target, 60_000);
      };
      await round(1000);
      const base = heapMB();
      await round(10_000);
      const grown = heapMB() - base;
      const d = diagnostics();
      console.log(`worker after 11k jobs: heap grew ${grown.toFixed(1)} MB; signal listeners ${live()}; ${JSON.stringify(d)}`);
      assert.ok(live() <= 1, `${live()} listeners on the worker's signal`);
      assert.ok(d.timers <= 3, `${d.timers} timers`);
      assert.ok(d.abortListeners <= 2, `${d.abortListeners} abort listeners`);
      assert.ok(grown < 20, `heap grew ${grown} MB`);
      ac.abort();
      await w.close();
      assert.equal(live(), 0);
      assert.equal(diagnostics().abortListeners, 0);
    } finally {
      db.close();
    }
  });

  test('idle waiters park the waiting thread: an idle process uses little CPU', async () => {
    const { db } = freshDb();
    try {
      const ac = new AbortController();
      const loops = Array.from({ length: 10 }, () =>
        (async () => {
          for await (const _ of db.listen('quiet', { signal: ac.signal }));
        })(),
      );
      await waitFor(() => diagnostics().pendingWaits === 10);
      ac.abort();
      await Promise.all(loops);
      await new Promise((r) => setTimeout(r, 400)); // past the idle linger
      const before = process.cpuUsage();
      await new Promise((r) => setTimeout(r, 1000));
      const used = process.cpuUsage(before);
      const ms = (used.user + used.system) / 1000;
      console.log(`idle CPU over 1 s with a parked waiting thread: ${ms.toFixed(1)} ms`);
      assert.ok(ms < 300, `${ms} ms of CPU while idle`);
    } finally {
      db.close();
    }
  });
});
