// Queues: enqueue in the caller's transaction, claim with fencing lease tokens, settle, inspect.
import type { Database } from './database.js';
import { ArgumentError, JobFailedError, LeaseLostError, WaitTimeoutError } from './errors.js';
import type { Json } from './json.js';
import { encode, int, millis, str } from './json.js';

/** Per-queue options, stored in the database and shared by every process and language. */
export interface QueueOptions {
  leaseMs?: number;
  maxAttempts?: number;
  backoffBaseMs?: number;
  backoffCapMs?: number;
  deadRetentionMs?: number;
  maxPayloadBytes?: number;
  paused?: boolean;
  keepHistoryMs?: number;
}

const QUEUE_KEYS: Record<string, string> = {
  leaseMs: 'lease_ms',
  maxAttempts: 'max_attempts',
  backoffBaseMs: 'backoff_base_ms',
  backoffCapMs: 'backoff_cap_ms',
  deadRetentionMs: 'dead_retention_ms',
  maxPayloadBytes: 'max_payload_bytes',
  paused: 'paused',
  keepHistoryMs: 'keep_history_ms',
};

/** Options of one enqueue. */
export interface EnqueueOptions {
  /** Run no sooner than this many ms from now. */
  delayMs?: number;
  /** Run no sooner than this time (a Date or ms since the epoch). */
  runAt?: Date | number;
  /** Higher runs first (default 0). */
  priority?: number;
  /** Attempts before the job goes to the dead letters (default: the queue's). */
  maxAttempts?: number;
  /** While a live job of this queue has this key, enqueue returns that job instead of a new one. */
  dedupKey?: string;
  /** Drop the job unrun after this time. */
  expiresAt?: Date | number;
  /** Drop the job unrun after this many ms from now. */
  expiresInMs?: number;
}

function enqueueOptionsJson(o: EnqueueOptions | undefined): string | null {
  if (o === undefined || o === null) return null;
  if (typeof o !== 'object') throw new ArgumentError('arg.invalid', 'enqueue options must be an object');
  const out: Record<string, Json> = {};
  let any = false;
  for (const k in o) {
    const v = (o as Record<string, unknown>)[k];
    if (v === undefined) continue;
    any = true;
    switch (k) {
      case 'delayMs': out['delay_ms'] = int('delayMs', v); break;
      case 'runAt': out['run_at_ms'] = millis('runAt', v); break;
      case 'priority': out['priority'] = int('priority', v); break;
      case 'maxAttempts': out['max_attempts'] = int('maxAttempts', v); break;
      case 'dedupKey': out['dedup_key'] = str('dedupKey', v); break;
      case 'expiresAt': out['expires_at_ms'] = millis('expiresAt', v); break;
      case 'expiresInMs': out['expires_in_ms'] = int('expiresInMs', v); break;
      default:
        throw new ArgumentError('queue.unknown_option', `unknown option "${k}"; known options: delayMs, runAt, priority, maxAttempts, dedupKey, expiresAt, expiresInMs`);
    }
  }
  return any ? JSON.stringify(out) : null;
}

/** A job's state and details, as `job(id)` reports it. */
export interface JobInfo<T = Json> {
  id: number;
  queue: string;
  state: 'pending' | 'scheduled' | 'running' | 'dead' | 'done' | string;
  payload: T;
  priority: number;
  attempts: number;
  maxAttempts: number;
  runAt: number;
  expiresAt: number | null;
  dedupKey: string | null;
  lastError: string | null;
  deadReason: string | null;
  worker: string | null;
  leaseExpiresAt: number | null;
  createdAt: number;
}

/** Counts of one queue. */
export interface QueueStats {
  queue: string;
  pending: number;
  scheduled: number;
  running: number;
  retrying: number;
  dead: number;
  oldestPendingAgeMs: number | null;
  nextDueAt: number | null;
}

/** A dead letter. */
export interface DeadLetter<T = Json> {
  id: number;
  queue: string;
  payload: T;
  priority: number;
  attempts: number;
  maxAttempts: number;
  reason: string;
  lastError: string | null;
  createdAt: number;
  diedAt: number;
}

/** A job enqueued by this process: its id, and its result when a worker produces one. */
export class JobHandle<R = Json> {
  constructor(
    private readonly db: Database,
    readonly id: number,
  ) {}

  /** What is known about the job now (null once acked without history, or cancelled). */
  info(): JobInfo | null {
    return jobInfo(this.db, this.id);
  }

  /**
   * The handler's return value, once a worker acked the job. Resolves `undefined` for a job
   * finished without a result; rejects with `JobFailedError` (`queue.job_dead`) if it died, and
   * `WaitTimeoutError` (`wait.timeout`) after `timeoutMs`.
   */
  async result(options: { timeoutMs?: number; signal?: AbortSignal } = {}): Promise<R | undefined> {
    const deadline = options.timeoutMs === undefined ? undefined : Date.now() + int('timeoutMs', options.timeoutMs, 0);
    for (;;) {
      const seen = this.db.epoch();
      const r = this.db.value('SELECT honker_result_get(CAST(? AS INTEGER))', this.id);
      if (r !== null && r !== undefined) return JSON.parse(r as string) as R;
      const info = this.info();
      if (info === null) return undefined;
      if (info.state === 'dead') {
        throw new JobFailedError('queue.job_dead', `job ${this.id} died (${info.deadReason ?? 'dead'}): ${info.lastError ?? ''}`);
      }
      if (info.state === 'done') return undefined;
      const outcome = await this.db.waitPast(seen, deadline, options.signal);
      if (outcome === 'timeout') throw new WaitTimeoutError('wait.timeout', `no result for job ${this.id} within ${options.timeoutMs} ms`);
      if (outcome === 'abort') throw options.signal?.reason ?? new Error('aborted');
    }
  }
}

interface ClaimRow {
  id: number;
  queue: string;
  payload: Json;
  attempts: number;
  max_attempts: number;
  lease_token: string;
  lease_expires_ms: number;
  priority: number;
}

/** A claimed job, held under a lease until it is acked, retried, failed or released. */
export class Job<T = Json> {
  readonly id: number;
  readonly queue: string;
  readonly payload: T;
  /** This claim's attempt number (1 for the first run). */
  readonly attempts: number;
  readonly maxAttempts: number;
  readonly priority: number;
  /** The fencing token of this claim: a stale holder can never settle the job. */
  readonly leaseToken: string;
  leaseExpiresAt: number;
  /** @internal */ settled = false;
  private controller: AbortController | undefined;
  private abortReason: unknown;
  private aborted = false;

  /** @internal */
  constructor(private readonly db: Database, row: ClaimRow) {
    this.id = row.id;
    this.queue = row.queue;
    this.payload = row.payload as T;
    this.attempts = row.attempts;
    this.maxAttempts = row.max_attempts;
    this.priority = row.priority;
    this.leaseToken = row.lease_token;
    this.leaseExpiresAt = row.lease_expires_ms;
  }

  /** Aborted when the worker shuts down past its grace period, the handler times out, or the lease is lost. */
  get signal(): AbortSignal {
    // Made on first use: most handlers never look at it, and claim + ack stays cheap.
    if (this.controller === undefined) {
      this.controller = new AbortController();
      if (this.aborted) this.controller.abort(this.abortReason);
    }
    return this.controller.signal;
  }

  /** @internal abort the job's signal. */
  abort(reason: unknown): void {
    if (this.aborted) return;
    this.aborted = true;
    this.abortReason = reason;
    this.controller?.abort(reason);
  }

  /** The payload (BullMQ's name for it). */
  get data(): T {
    return this.payload;
  }

  /** Finish the job, saving `result` (if given) in the same transaction. */
  ack(result?: unknown): void {
    if (result === undefined) {
      this.db.value('SELECT honker_ack(CAST(? AS INTEGER), CAST(? AS INTEGER))', this.id, this.leaseToken);
    } else {
      const value = encode(result);
      this.db.transaction(() => {
        this.db.value('SELECT honker_result_save(CAST(? AS INTEGER), ?)', this.id, value);
        this.db.value('SELECT honker_ack(CAST(? AS INTEGER), CAST(? AS INTEGER))', this.id, this.leaseToken);
      });
    }
    this.settled = true;
  }

  /**
   * Apply `effect` and finish the job in one transaction: the effect happens exactly once even if
   * the process dies at any point (a lost lease rolls the effect back with `LeaseLostError`).
   */
  complete<R>(effect: (db: Database) => R, options: { saveResult?: boolean } = {}): R {
    const r = this.db.transaction((db) => {
      const out = effect(db);
      if (options.saveResult === true && out !== undefined) {
        db.value('SELECT honker_result_save(CAST(? AS INTEGER), ?)', this.id, encode(out));
      }
      db.value('SELECT honker_ack(CAST(? AS INTEGER), CAST(? AS INTEGER))', this.id, this.leaseToken);
      return out;
    });
    this.settled = true;
    return r;
  }

  /** Give the job back for another attempt after `delayMs` (default: the queue's backoff). */
  retry(options: { delayMs?: number; error?: string } = {}): { state: 'retrying'; runAt: number } | { state: 'dead' } {
    const delay = options.delayMs === undefined ? null : int('delayMs', options.delayMs, 0);
    const r = JSON.parse(
      this.db.value('SELECT honker_retry(CAST(? AS INTEGER), CAST(? AS INTEGER), CAST(? AS INTEGER), ?)', this.id, this.leaseToken, delay, options.error ?? null) as string,
    ) as { state: string; run_at_ms?: number };
    this.settled = true;
    return r.state === 'dead' ? { state: 'dead' } : { state: 'retrying', runAt: r.run_at_ms! };
  }

  /** Send the job to the dead letters now. */
  fail(error: string): void {
    this.db.value('SELECT honker_fail(CAST(? AS INTEGER), CAST(? AS INTEGER), ?)', this.id, this.leaseToken, str('error', error));
    this.settled = true;
  }

  /** Give the job back without using an attempt. */
  release(): void {
    this.db.value('SELECT honker_release(CAST(? AS INTEGER), CAST(? AS INTEGER))', this.id, this.leaseToken);
    this.settled = true;
  }

  /** Extend the lease by `extendMs` from now; the new expiry. `LeaseLostError` if it was lost. */
  heartbeat(extendMs: number): number {
    this.leaseExpiresAt = this.db.value(
      'SELECT honker_heartbeat(CAST(? AS INTEGER), CAST(? AS INTEGER), CAST(? AS INTEGER))',
      this.id,
      this.leaseToken,
      int('extendMs', extendMs, 1),
    ) as number;
    return this.leaseExpiresAt;
  }
}

// Lease tokens can pass 2^53 (they are job id << 24 plus a count), so they are read as strings.
const TOKEN = /"lease_token":(\d+)/g;

function parseClaims(text: string): ClaimRow[] {
  return JSON.parse(text.indexOf('"lease_token"') < 0 ? text : text.replace(TOKEN, '"lease_token":"$1"')) as ClaimRow[];
}

/** A named queue on a Database. Every method runs on the Database's connection (and its transaction). */
export class Queue<T = Json> {
  /** @internal */
  constructor(
    readonly db: Database,
    readonly name: string,
  ) {}

  /** Store options for this queue; the full options now. */
  configure(options: QueueOptions): Record<string, Json> {
    if (options === null || typeof options !== 'object') throw new ArgumentError('arg.invalid', 'queue options must be an object');
    const out: Record<string, Json> = {};
    for (const k in options) {
      const v = (options as Record<string, unknown>)[k];
      if (v === undefined) continue;
      const key = QUEUE_KEYS[k];
      if (key === undefined) {
        throw new ArgumentError('queue.unknown_option', `unknown option "${k}"; known options: ${Object.keys(QUEUE_KEYS).join(', ')}`);
      }
      out[key] = k === 'paused' ? (v as boolean) : int(k, v);
    }
    return JSON.parse(this.db.value('SELECT honker_queue_configure(?, ?)', this.name, JSON.stringify(out)) as string) as Record<string, Json>;
  }

  /** Enqueue one job (in the current transaction, if any). */
  enqueue(payload: T, options?: EnqueueOptions): JobHandle {
    const text = encode(payload);
    const opts = enqueueOptionsJson(options);
    const id = opts === null
      ? this.db.value('SELECT honker_enqueue(?, ?)', this.name, text)
      : this.db.value('SELECT honker_enqueue(?, ?, ?)', this.name, text, opts);
    return new JobHandle(this.db, id as number);
  }

  /** Enqueue many jobs in one statement, all or nothing. */
  enqueueMany(payloads: readonly T[], options?: EnqueueOptions): JobHandle[] {
    if (!Array.isArray(payloads)) throw new ArgumentError('arg.invalid', 'enqueueMany() takes an array of payloads');
    const text = encode(payloads);
    const opts = enqueueOptionsJson(options);
    const ids = JSON.parse(
      (opts === null
        ? this.db.value('SELECT honker_enqueue_batch(?, ?)', this.name, text)
        : this.db.value('SELECT honker_enqueue_batch(?, ?, ?)', this.name, text, opts)) as string,
    ) as number[];
    return ids.map((id) => new JobHandle(this.db, id));
  }

  /** Claim up to `n` due jobs for `worker`, without waiting. */
  claim(worker: string, n = 1, leaseMs?: number): Job<T>[] {
    str('worker', worker);
    int('n', n, 0);
    const text = leaseMs === undefined
      ? (this.db.value('SELECT honker_claim(?, ?, CAST(? AS INTEGER))', this.name, worker, n) as string)
      : (this.db.value('SELECT honker_claim(?, ?, CAST(? AS INTEGER), CAST(? AS INTEGER))', this.name, worker, n, int('leaseMs', leaseMs, 1)) as string);
    if (text === '[]') return [];
    return parseClaims(text).map((r) => new Job<T>(this.db, r));
  }

  /** Ack many claimed jobs in one transaction; how many were still held. */
  ackMany(jobs: readonly Job<T>[]): number {
    const pairs = jobs.map((j) => `[${j.id},${j.leaseToken}]`).join(',');
    const n = this.db.value('SELECT honker_ack_batch(?)', `[${pairs}]`) as number;
    for (const j of jobs) j.settled = true;
    return n;
  }

  /** What is known about job `id`. */
  job(id: number): JobInfo | null {
    return jobInfo(this.db, int('id', id));
  }

  /** Cancel a job that is not running; true if it was removed. */
  cancel(id: number): boolean {
    return this.db.value('SELECT honker_cancel(CAST(? AS INTEGER))', int('id', id)) === 1;
  }

  stats(): QueueStats {
    const s = JSON.parse(this.db.value('SELECT honker_queue_stats(?)', this.name) as string) as Record<string, number | null>;
    return {
      queue: this.name,
      pending: s['pending'] as number,
      scheduled: s['scheduled'] as number,
      running: s['running'] as number,
      retrying: s['retrying'] as number,
      dead: s['dead'] as number,
      oldestPendingAgeMs: s['oldest_pending_age_ms'] ?? null,
      nextDueAt: s['next_due_ms'] ?? null,
    };
  }

  /** When the next job becomes claimable (ms since the epoch), or null. */
  nextDue(): number | null {
    return (this.db.value('SELECT honker_next_due(?)', this.name) as number | null) ?? null;
  }

  /** Dead letters, newest first. */
  deadLetters(options: { limit?: number } = {}): DeadLetter<T>[] {
    const limit = int('limit', options.limit ?? 100, 0);
    return this.db.rows<Record<string, unknown>>('SELECT honker_dead_list(?, CAST(? AS INTEGER))', this.name, limit).map((d) => ({
      id: d['id'] as number,
      queue: d['queue'] as string,
      payload: d['payload'] as T,
      priority: d['priority'] as number,
      attempts: d['attempts'] as number,
      maxAttempts: d['max_attempts'] as number,
      reason: d['reason'] as string,
      lastError: (d['last_error'] as string | null) ?? null,
      createdAt: d['created_ms'] as number,
      diedAt: d['died_ms'] as number,
    }));
  }

  /** Put dead job `id` back in the queue (fresh attempts); true if it was dead. */
  requeueDead(id: number): boolean {
    return this.db.value('SELECT honker_dead_requeue(CAST(? AS INTEGER))', int('id', id)) === 1;
  }

  /** Put every dead job of this queue back; how many. */
  requeueAllDead(): number {
    return this.db.value('SELECT honker_dead_requeue_all(?)', this.name) as number;
  }

  /** Delete dead letters older than `olderThanMs` (default: all); how many. */
  purgeDead(options: { olderThanMs?: number } = {}): number {
    const older = int('olderThanMs', options.olderThanMs ?? 0, 0);
    return this.db.value('SELECT honker_dead_purge(?, ?)', this.name, JSON.stringify({ older_than_ms: older })) as number;
  }
}

/** @internal */
export function jobInfo(db: Database, id: number): JobInfo | null {
  const t = db.value('SELECT honker_job(CAST(? AS INTEGER))', id) as string | null;
  if (t === null || t === undefined) return null;
  const j = JSON.parse(t) as Record<string, unknown>;
  return {
    id: j['id'] as number,
    queue: j['queue'] as string,
    state: j['state'] as string,
    payload: j['payload'] as Json,
    priority: j['priority'] as number,
    attempts: j['attempts'] as number,
    maxAttempts: j['max_attempts'] as number,
    runAt: j['run_at_ms'] as number,
    expiresAt: (j['expires_at_ms'] as number | null) ?? null,
    dedupKey: (j['dedup_key'] as string | null) ?? null,
    lastError: (j['last_error'] as string | null) ?? null,
    deadReason: (j['dead_reason'] as string | null) ?? null,
    worker: (j['worker'] as string | null) ?? null,
    leaseExpiresAt: (j['lease_expires_ms'] as number | null) ?? null,
    createdAt: j['created_ms'] as number,
  };
}


