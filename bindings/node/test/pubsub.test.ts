import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { type Notification, diagnostics } from '../src/index.js';
import { child, freshDb, runChild, waitFor } from './helpers.js';

describe('notify and listen', () => {
  test('listeners get notifications committed after they start, in order, and stop on abort', async () => {
    const { db } = freshDb();
    try {
      db.notify('c', 'before');
      const ac = new AbortController();
      const got: Notification[] = [];
      const done = (async () => {
        for await (const n of db.listen('c', { signal: ac.signal })) got.push(n);
      })();
      await waitFor(() => diagnostics().pendingWaits > 0);
      db.notify('c', { a: 1 });
      db.notify('other', 'not mine');
      db.transaction(() => {
        db.notify('c', [2]);
        db.notify('c', 'three');
      });
      await waitFor(() => got.length === 3);
      ac.abort();
      await done;
      assert.deepEqual(got.map((n) => n.payload), [{ a: 1 }, [2], 'three']);
      assert.ok(got.every((n) => n.channel === 'c' && n.createdAt > 0));
      assert.ok(got[0]!.id < got[1]!.id && got[1]!.id < got[2]!.id);
    } finally {
      db.close();
    }
  });

  test('a notification in a rolled-back transaction is never delivered', async () => {
    const { db } = freshDb();
    try {
      const ac = new AbortController();
      const got: unknown[] = [];
      const done = (async () => {
        for await (const n of db.listen('c', { signal: ac.signal })) {
          got.push(n.payload);
          if (n.payload === 'end') ac.abort();
        }
      })();
      assert.throws(() =>
        db.transaction(() => {
          db.notify('c', 'rolled back');
          throw new Error('no');
        }),
      );
      db.notify('c', 'end');
      await done;
      assert.deepEqual(got, ['end']);
    } finally {
      db.close();
    }
  });

  test('listen with after replays from that id', async () => {
    const { db } = freshDb();
    try {
      const first = db.notify('c', 1);
      db.notify('c', 2);
      const got: unknown[] = [];
      for await (const n of db.listen('c', { after: first - 1 })) {
        got.push(n.payload);
        if (got.length === 2) break;
      }
      assert.deepEqual(got, [1, 2]);
      assert.equal(diagnostics().pendingWaits, 0);
    } finally {
      db.close();
    }
  });

  test('a listener wakes for notifications from another process', async () => {
    const { db, path } = freshDb();
    try {
      const ac = new AbortController();
      const got: unknown[] = [];
      const done = (async () => {
        for await (const n of db.listen<{ i: number }>('x', { signal: ac.signal })) {
          got.push(n.payload.i);
          if (got.length === 20) ac.abort();
        }
      })();
      await waitFor(() => diagnostics().pendingWaits > 0);
      await runChild('notify', path, 'x', '20');
      await done;
      assert.deepEqual(got, [...Array(20).keys()]);
    } finally {
      db.close();
    }
  });

  test('a process whose listener finished exits on its own', async () => {
    const { db, path } = freshDb();
    try {
      const c = child('listen-then-exit', path, 'bye');
      let out = '';
      c.stdout!.on('data', (d: Buffer) => (out += d.toString()));
      await waitFor(() => out.includes('listening'));
      // The child samples "now" when it starts listening; notify until it has seen one.
      const exited = new Promise<number | null>((r) => c.on('exit', (code) => r(code)));
      const pump = setInterval(() => db.notify('bye', 'ok'), 20);
      const code = await exited;
      clearInterval(pump);
      assert.equal(code, 0);
      assert.match(out, /got "ok"/);
    } finally {
      db.close();
    }
  });
});

describe('process exit', () => {
  test('a process that closes its database under a waiting listener exits promptly', async () => {
    const { db, path } = freshDb();
    db.close();
    const t0 = Date.now();
    assert.equal((await runChild('close-while-waiting', path, 'c')).trim(), 'db.closed');
    // The thread's own wait timeout is 60 s; a cancelled wait ends in milliseconds.
    assert.ok(Date.now() - t0 < 30_000, `exited after ${Date.now() - t0} ms`);
  });
});

describe('waits refuse an open transaction', () => {
  test('listen and subscribe inside a transaction fail with wait.in_transaction', async () => {
    const { db } = freshDb();
    try {
      db.conn.exec('BEGIN IMMEDIATE');
      const isCode = (e: unknown) => (e as { code?: string }).code === 'wait.in_transaction';
      await assert.rejects(db.listen('c').next(), isCode);
      await assert.rejects(db.stream('t').subscribe('c').next(), isCode);
      await assert.rejects(db.queue('q').enqueue(1).result({ timeoutMs: 10 }), isCode);
      db.conn.exec('ROLLBACK');
      assert.equal(db.queue('q').stats().pending, 0);
    } finally {
      db.close();
    }
  });
});
