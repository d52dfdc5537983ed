// Durable streams: publish in the caller's transaction, read after an offset, and subscribe as
// a named consumer whose offset commits in the caller's transaction or automatically.
import type { Database } from './database.js';
import { ArgumentError, inTransaction } from './errors.js';
import type { Json } from './json.js';
import { encode, int, str } from './json.js';
import { isAborted } from './waiter.js';

/** One event of a stream. */
export interface StreamEvent<T = Json> {
  offset: number;
  topic: string;
  key: string | null;
  payload: T;
  createdAt: number;
}

/** An event handed to a subscriber; `commit()` records it as processed (in the current transaction, if any). */
export interface SubscribedEvent<T = Json> extends StreamEvent<T> {
  commit(): boolean;
}

/** Options of `subscribe()`. */
export interface SubscribeOptions {
  /** Ends the iteration. */
  signal?: AbortSignal;
  /**
   * Commit offsets automatically (default true): an event counts as processed once the loop asks
   * for the next one; the event being processed when the loop breaks or throws is delivered
   * again. With false, call `event.commit()` (or `stream.commit()`), ideally in the transaction
   * that applies the event's effect, for exactly-once effects on this database.
   */
  autoCommit?: boolean;
  /** Events fetched per read (default 100). */
  batchSize?: number;
  /** Where a consumer with no committed offset starts (default 0: the beginning). */
  from?: number;
}

/** A consumer's position and lag. */
export interface ConsumerInfo {
  consumer: string;
  topic: string;
  offset: number;
  lagEvents: number;
  lagMs: number | null;
  updatedAt: number;
  behindTrim: boolean;
}

interface Row {
  offset: number;
  topic: string;
  key: string | null;
  payload: Json;
  created_ms: number;
}

function toEvent<T>(r: Row): StreamEvent<T> {
  return { offset: r.offset, topic: r.topic, key: r.key, payload: r.payload as T, createdAt: r.created_ms };
}

export class Stream<T = Json> {
  /** @internal */
  constructor(
    readonly db: Database,
    readonly topic: string,
  ) {}

  /** Append an event (in the current transaction, if any); its offset. */
  publish(payload: T, options: { key?: string } = {}): number {
    const text = encode(payload);
    return (options.key === undefined
      ? this.db.value('SELECT honker_publish(?, ?)', this.topic, text)
      : this.db.value('SELECT honker_publish(?, ?, ?)', this.topic, text, str('key', options.key))) as number;
  }

  /** Up to `limit` events after offset `after`. */
  read(options: { after?: number; limit?: number } = {}): StreamEvent<T>[] {
    const after = int('after', options.after ?? 0, 0);
    const limit = int('limit', options.limit ?? 100, 0);
    return this.db.rows<Row>('SELECT honker_read(?, CAST(? AS INTEGER), CAST(? AS INTEGER))', this.topic, after, limit).map((r) => toEvent<T>(r));
  }

  /** Record `offset` as processed by `consumer` (monotonic; in the current transaction, if any); true when it advanced. */
  commit(consumer: string, offset: number): boolean {
    return this.db.value('SELECT honker_commit_offset(?, ?, CAST(? AS INTEGER))', str('consumer', consumer), this.topic, int('offset', offset, 0)) === 1;
  }

  /** The committed offset of `consumer`, or null. */
  offset(consumer: string): number | null {
    return (this.db.value('SELECT honker_offset(?, ?)', str('consumer', consumer), this.topic) as number | null) ?? null;
  }

  /** Every consumer of the topic with its lag. */
  consumers(): ConsumerInfo[] {
    return this.db.rows<Record<string, unknown>>('SELECT honker_consumers(?)', this.topic).map((c) => ({
      consumer: c['consumer'] as string,
      topic: c['topic'] as string,
      offset: c['offset'] as number,
      lagEvents: c['lag_events'] as number,
      lagMs: (c['lag_ms'] as number | null) ?? null,
      updatedAt: c['updated_ms'] as number,
      behindTrim: c['behind_trim'] as boolean,
    }));
  }

  /** Delete events by age, count or offset (default: the topic's policy); how many. */
  trim(options: { maxAgeMs?: number; maxEvents?: number; through?: number; force?: boolean } = {}): number {
    const o: Record<string, Json> = {};
    for (const [k, v] of Object.entries(options)) {
      if (v === undefined) continue;
      if (k === 'maxAgeMs') o['max_age_ms'] = int(k, v, 0);
      else if (k === 'maxEvents') o['max_events'] = int(k, v, 0);
      else if (k === 'through') o['through'] = int(k, v, 0);
      else if (k === 'force') o['force'] = Boolean(v);
      else throw new ArgumentError('options.unknown', `unknown option "${k}"; known options: maxAgeMs, maxEvents, through, force`);
    }
    return this.db.value('SELECT honker_stream_trim(?, ?)', this.topic, JSON.stringify(o)) as number;
  }

  /**
   * Events after the consumer's committed offset, then live ones as they commit, from any process.
   * The event loop never blocks: waits run on the shared waiting thread.
   */
  async *subscribe(consumer: string, options: SubscribeOptions = {}): AsyncGenerator<SubscribedEvent<T>, void, undefined> {
    str('consumer', consumer);
    const { signal } = options;
    const auto = options.autoCommit !== false;
    const batch = int('batchSize', options.batchSize ?? 100, 1);
    let pos = this.offset(consumer) ?? int('from', options.from ?? 0, 0);
    let committed = pos;
    let processed = pos;
    const flush = () => {
      if (auto && processed > committed) {
        this.commit(consumer, processed);
        committed = processed;
      }
    };
    try {
      while (!isAborted(signal)) {
        if (this.db.conn.inTransaction) throw inTransaction();
        flush();
        const seen = this.db.epoch();
        const rows = this.db.rows<Row>('SELECT honker_read(?, CAST(? AS INTEGER), CAST(? AS INTEGER))', this.topic, pos, batch);
        if (rows.length === 0) {
          if ((await this.db.waitPast(seen, undefined, signal)) === 'abort') return;
          continue;
        }
        for (const r of rows) {
          const ev = toEvent<T>(r) as SubscribedEvent<T>;
          ev.commit = () => this.commit(consumer, r.offset);
          pos = r.offset;
          yield ev;
          processed = r.offset;
          if (isAborted(signal)) return;
        }
      }
    } finally {
      flush();
    }
  }
}
