import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { ArgumentError, HonkerError, PayloadError, QueueError, StreamError } from '../src/index.js';
import { count, freshDb } from './helpers.js';

const TABLES = ['honker_jobs', 'honker_notifications', 'honker_streams', 'honker_queues', 'honker_schedules', 'honker_locks'];

describe('bad input gives the typed error and writes nothing', () => {
  const cyclic: Record<string, unknown> = {};
  cyclic['self'] = cyclic;
  const badPayloads: Array<[string, unknown]> = [
    ['NaN', Number.NaN],
    ['Infinity', { a: Infinity }],
    ['an integer past 2^53', [2 ** 60]],
    ['a BigInt', { n: 10n }],
    ['undefined', undefined],
    ['a function', () => 1],
    ['a cycle', cyclic],
    ['a lone surrogate', '\ud800'],
    ['nesting past 64 levels', JSON.parse('['.repeat(70) + ']'.repeat(70))],
  ];

  for (const [what, payload] of badPayloads) {
    test(`payload: ${what}`, () => {
      const { db } = freshDb();
      try {
        const before = TABLES.map((t) => count(db, t));
        const isPayload = (e: unknown) => e instanceof PayloadError && e.code === 'payload.not_json';
        assert.throws(() => db.queue('q').enqueue(payload as never), isPayload);
        assert.throws(() => db.queue('q').enqueueMany([1, payload] as never), isPayload);
        assert.throws(() => db.notify('c', payload), isPayload);
        assert.throws(() => db.stream('t').publish(payload as never), isPayload);
        assert.deepEqual(TABLES.map((t) => count(db, t)), before);
      } finally {
        db.close();
      }
    });
  }

  test('unknown options, bad names and bad numbers', () => {
    const { db } = freshDb();
    try {
      const q = db.queue('q');
      const check = (f: () => unknown, C: typeof HonkerError, code: string) =>
        assert.throws(f, (e: unknown) => e instanceof C && (e as HonkerError).code === code, code);
      check(() => q.enqueue(1, { bogus: 1 } as never), ArgumentError, 'queue.unknown_option');
      check(() => q.enqueue(1, { delayMs: 1.5 }), ArgumentError, 'arg.invalid');
      check(() => q.enqueue(1, { delayMs: -5 }), ArgumentError, 'queue.bad_option');
      check(() => q.enqueue(1, { dedupKey: 7 as never }), ArgumentError, 'arg.invalid');
      check(() => q.claim('w', -1), ArgumentError, 'arg.invalid');
      check(() => db.queue('').enqueue(1), QueueError, 'queue.bad_name');
      check(() => db.notify('', 1), StreamError, 'notify.bad_channel');
      check(() => db.stream('t').read({ after: -1 }), ArgumentError, 'arg.invalid');
      check(() => db.rateLimit('r', { limit: 1, perMs: 0 }), ArgumentError, 'arg.invalid');
      assert.deepEqual(TABLES.map((t) => count(db, t)), TABLES.map(() => 0));
    } finally {
      db.close();
    }
  });

  test('driver errors without the honker prefix pass through unchanged', () => {
    const { db } = freshDb();
    try {
      assert.throws(() => db.value('SELECT nope()'), (e: unknown) => e instanceof Error && !(e instanceof HonkerError) && /no such function/.test(e.message));
    } finally {
      db.close();
    }
  });
});
