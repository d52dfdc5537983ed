import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { attach, DatabaseError, ExtensionError, findExtension, isBun, open, Worker } from '../src/index.js';
import { requireHere } from '../src/here.js';
import { count, freshDb, freshPath, here, runChild, runtime, waitFor } from './helpers.js';

describe('open and attach', () => {
  test('open applies the set-up: WAL, synchronous NORMAL, busy timeout, foreign keys, autocheckpoint', () => {
    const { db } = freshDb();
    try {
      assert.equal(String(db.value('SELECT journal_mode FROM pragma_journal_mode')).toLowerCase(), 'wal');
      assert.equal(db.value('SELECT synchronous FROM pragma_synchronous'), 1);
      assert.equal(db.value('SELECT timeout FROM pragma_busy_timeout'), 5000);
      assert.equal(db.value('SELECT foreign_keys FROM pragma_foreign_keys'), 1);
      assert.equal(db.value('PRAGMA wal_autocheckpoint'), 10000);
      const info = db.info();
      assert.equal(info.version, db.features.version);
      assert.ok(Number(info.schema_version) >= 1);
      assert.equal(String(info.journal_mode).toLowerCase(), 'wal');
      assert.equal(typeof info.wake_backend, 'string');
      assert.equal(db.conn.kind, isBun ? 'bun:sqlite' : 'better-sqlite3');
    } finally {
      db.close();
    }
  });

  test('features reflect the functions the loaded extension has', () => {
    const { db } = freshDb();
    try {
      const has = (name: string) => (db.value('SELECT COUNT(*) FROM pragma_function_list WHERE name = ?', name) as number) > 0;
      assert.equal(db.features.setup, has('honker_setup'));
      assert.equal(db.features.info, has('honker_info'));
      assert.equal(db.features.cancelKeys, has('honker_wait_cancel'));
    } finally {
      db.close();
    }
  });

  test('a database with no file is refused with db.not_file', () => {
    assert.throws(() => open(':memory:'), (e: unknown) => e instanceof DatabaseError && e.code === 'db.not_file');
  });

  test('a missing extension names the path tried', () => {
    assert.throws(
      () => open(freshPath(), { extensionPath: '/nonexistent/libhonker_ext.so' }),
      (e: unknown) => e instanceof ExtensionError && e.code === 'ext.not_found' && e.message.includes('/nonexistent/libhonker_ext.so'),
    );
  });

  test('attach: a job enqueued in the application transaction commits or rolls back with the business row', () => {
    const path = freshPath();
    const raw = isBun ? new (requireHere('bun:sqlite').Database)(path) : new (requireHere('better-sqlite3'))(path);
    const db = attach(raw);
    try {
      raw.exec('CREATE TABLE orders (id INTEGER PRIMARY KEY, item TEXT)');
      const q = db.queue('ship');
      const tx = raw.transaction((item: string, fail: boolean) => {
        raw.prepare('INSERT INTO orders (item) VALUES (?)').run(item);
        q.enqueue({ item });
        if (fail) throw new Error('payment declined');
      });
      tx('book', false);
      assert.throws(() => tx('lamp', true), /payment declined/);
      assert.equal(count(db, 'orders'), 1);
      assert.equal(q.stats().pending, 1);
      const [job] = q.claim('w', 10);
      assert.deepEqual(job!.payload, { item: 'book' });
    } finally {
      db.close();
      raw.close();
    }
  });

  test('a rolled-back job never runs', async () => {
    const { db } = freshDb();
    try {
      const q = db.queue('q');
      assert.throws(() =>
        db.transaction(() => {
          q.enqueue({ n: 'rolled back' });
          throw new Error('abort');
        }),
      );
      db.transaction(() => q.enqueue({ n: 'committed' }));
      const seen: unknown[] = [];
      const w = new Worker(q, (job) => void seen.push(job.payload));
      await waitFor(() => seen.length >= 1);
      // Give the worker every chance to see a second job: enqueue a marker and wait for it.
      q.enqueue({ n: 'marker' });
      await waitFor(() => seen.length >= 2);
      await w.close();
      assert.deepEqual(seen, [{ n: 'committed' }, { n: 'marker' }]);
      assert.equal(count(db, 'honker_jobs'), 0);
    } finally {
      db.close();
    }
  });

  test('transaction() refuses an async function and rolls its writes back', () => {
    const { db } = freshDb();
    try {
      const q = db.queue('q');
      assert.throws(
        () => db.transaction(async () => void q.enqueue(1)),
        (e: unknown) => e instanceof Error && (e as { code?: string }).code === 'arg.invalid',
      );
      assert.equal(q.stats().pending, 0);
    } finally {
      db.close();
    }
  });

  test('the CommonJS entry works', () => {
    const path = freshPath();
    const cjs = join(here, '..', '..', 'dist', 'cjs', 'index.js');
    const out = execFileSync(process.execPath, ['-e', `
      const h = require(${JSON.stringify(cjs)});
      const db = h.open(${JSON.stringify(path)});
      const id = db.queue('c').enqueue({ a: 1 }).id;
      const [job] = db.queue('c').claim('w', 1);
      job.ack();
      console.log(JSON.stringify({ id, got: job.id, err: new h.HonkerError('x.y', 'm').code }));
      db.close();
    `]).toString();
    assert.deepEqual(JSON.parse(out), { id: 1, got: 1, err: 'x.y' });
  });

  test('a file newer than this build is refused with schema.too_new, in a fresh process, without a crash', async () => {
    const { db, path } = freshDb();
    db.run("UPDATE honker_meta SET value = value + 1 WHERE key = 'schema_version'");
    db.close();
    assert.equal((await runChild('open-fails', path)).trim(), 'schema.too_new');
    assert.throws(() => open(path), (e: unknown) => e instanceof DatabaseError && e.code === 'schema.too_new');
  });

  test('findExtension honours an explicit path first', () => {
    const p = findExtension();
    assert.equal(findExtension(p), p);
    assert.ok(runtime === 'node' || runtime === 'bun');
  });
});
