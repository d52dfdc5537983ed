import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { ArgumentError } from '../src/index.js';
import { delay, freshDb } from './helpers.js';

describe('locks and rate limits', () => {
  test('a lock is exclusive, renewable, and a later holder has a larger fencing token', async () => {
    const { db } = freshDb();
    try {
      const a = db.lock('migrate', { ttlMs: 10_000, owner: 'a' });
      assert.ok(a !== null);
      assert.equal(db.lock('migrate', { ttlMs: 10_000, owner: 'b' }), null);
      assert.equal(a.renew(10_000), true);
      assert.equal(a.release(), true);
      assert.equal(a.release(), false);
      const b = db.lock('migrate', { ttlMs: 30, owner: 'b' })!;
      assert.ok(b.token > a.token);
      await delay(60);
      const c = db.lock('migrate', { ttlMs: 1000, owner: 'c' })!;
      assert.ok(c.token > b.token);
      assert.equal(b.renew(1000), false);
      assert.throws(() => db.lock('migrate', { ttlMs: 0 }), ArgumentError);
    } finally {
      db.close();
    }
  });

  test('rateLimit admits `limit` per window and refuses the rest without counting them', () => {
    const { db } = freshDb();
    try {
      const r = Array.from({ length: 5 }, () => db.rateLimit('api', { limit: 3, perMs: 60_000 }));
      assert.deepEqual(r, [true, true, true, false, false]);
      assert.equal(db.rateLimit('other', { limit: 1, perMs: 60_000 }), true);
    } finally {
      db.close();
    }
  });
});
