// The Worker: claims jobs as they become due, runs the handler with bounded concurrency,
// heartbeats held leases, retries thrown errors after a delay, and on close() releases what it
// still holds without using an attempt. Waits run on the shared waiting thread.
import { EventEmitter } from 'node:events';
import { hostname } from 'node:os';
import { HonkerError, LeaseLostError, mapError } from './errors.js';
import type { Json } from './json.js';
import { int } from './json.js';
import type { Job, Queue } from './queue.js';
import { armTimer, onAbort, sleep } from './waiter.js';

/** Throw this from a handler to send the job to the dead letters without further attempts. */
export class UnrecoverableError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'UnrecoverableError';
  }
}

/** Options of a Worker. */
export interface WorkerOptions {
  /** Jobs run at once (default 1). */
  concurrency?: number;
  /** Aborting it closes the worker gracefully. */
  signal?: AbortSignal;
  /** Lease of each claim (default 30 000 ms); heartbeats extend it while the handler runs. */
  leaseMs?: number;
  /** Heartbeat period (default leaseMs / 3). */
  heartbeatMs?: number;
  /** Delay before a retry after a thrown error: a number, or a function of (attempt, error); default the queue's backoff. */
  retryDelayMs?: number | ((attempt: number, error: unknown) => number | undefined);
  /** Abort the job's signal and retry it when the handler runs longer than this. */
  timeoutMs?: number;
  /** The worker's name in the jobs it holds (default host-pid-n). */
  name?: string;
  /** Start at once (default true); otherwise call run(). */
  autorun?: boolean;
}

/** A handler: its return value is saved as the job's result (unless undefined). */
export type Processor<T, R> = (job: Job<T>) => Promise<R> | R;

let workerCounter = 0;

export interface WorkerEvents<T, R> {
  completed: [job: Job<T>, result: R];
  failed: [job: Job<T>, error: unknown];
  error: [error: unknown];
}

export class Worker<T = Json, R = unknown> extends EventEmitter {
  readonly queue: Queue<T>;
  readonly name: string;
  private readonly processor: Processor<T, R>;
  private readonly concurrency: number;
  private readonly leaseMs: number;
  private readonly heartbeatMs: number;
  private readonly timeoutMs: number | undefined;
  private readonly retryDelay: WorkerOptions['retryDelayMs'];
  private readonly active = new Map<Job<T>, Promise<void>>();
  private readonly stop = new AbortController();
  private slot: (() => void) | undefined;
  private loopDone: Promise<void> | undefined;
  private closing: Promise<void> | undefined;
  private clearHeartbeat: () => void = () => {};
  private readonly removeSignal: () => void;

  constructor(queue: Queue<T>, processor: Processor<T, R>, options: WorkerOptions = {}) {
    super();
    if (typeof processor !== 'function') throw new HonkerError('arg.invalid', 'Worker needs a handler function');
    this.queue = queue;
    this.processor = processor;
    this.concurrency = int('concurrency', options.concurrency ?? 1, 1);
    this.leaseMs = int('leaseMs', options.leaseMs ?? 30_000, 1);
    this.heartbeatMs = int('heartbeatMs', options.heartbeatMs ?? Math.max(1, Math.floor(this.leaseMs / 3)), 1);
    this.timeoutMs = options.timeoutMs === undefined ? undefined : int('timeoutMs', options.timeoutMs, 1);
    this.retryDelay = options.retryDelayMs;
    this.name = options.name ?? `${hostname()}-${process.pid}-${++workerCounter}`;
    this.removeSignal = onAbort(options.signal, () => void this.close());
    if (options.signal?.aborted === true) void this.close();
    if (options.autorun !== false) void this.run();
  }

  override on<E extends keyof WorkerEvents<T, R>>(event: E, listener: (...args: WorkerEvents<T, R>[E]) => void): this {
    return super.on(event, listener as (...args: unknown[]) => void);
  }

  /** Jobs running now. */
  get running(): number {
    return this.active.size;
  }

  /** Start the claim loop (once); resolves when the worker stops claiming. */
  run(): Promise<void> {
    this.loopDone ??= this.loop();
    return this.loopDone;
  }

  /**
   * Stop claiming, wait up to `timeoutMs` (default: no limit) for running handlers, then abort
   * the rest and release their jobs without using an attempt.
   */
  close(options: { timeoutMs?: number } = {}): Promise<void> {
    this.closing ??= this.shutdown(options.timeoutMs);
    return this.closing;
  }

  private async shutdown(timeoutMs: number | undefined): Promise<void> {
    this.stop.abort();
    this.slot?.();
    this.removeSignal();
    await this.loopDone;
    if (this.active.size > 0) {
      const drained = Promise.all(this.active.values()).then(() => 'drained' as const);
      let cancel = () => {};
      const timedOut = timeoutMs === undefined ? undefined : new Promise<'timeout'>((r) => (cancel = armTimer(() => r('timeout'), timeoutMs)));
      const outcome = timedOut === undefined ? await drained : await Promise.race([drained, timedOut]);
      cancel();
      if (outcome === 'timeout') {
        for (const job of this.active.keys()) {
          if (job.settled) continue;
          job.settled = true;
          job.abort(new HonkerError('worker.closed', 'the worker closed while the job ran'));
          try {
            job.release();
          } catch (e) {
            this.report(mapError(e));
          }
        }
      }
    }
    this.clearHeartbeat();
  }

  private async loop(): Promise<void> {
    const { signal } = this.stop;
    let idleAfterDeadline = false;
    while (!signal.aborted) {
      const free = this.concurrency - this.active.size;
      if (free <= 0) {
        await new Promise<void>((r) => (this.slot = r));
        this.slot = undefined;
        continue;
      }
      let jobs: Job<T>[];
      let seen: number;
      let due: number | null;
      try {
        seen = this.queue.db.epoch();
        jobs = this.queue.claim(this.name, free, this.leaseMs);
        due = jobs.length > 0 ? null : this.queue.nextDue();
      } catch (e) {
        // SQLITE_BUSY past the busy timeout, or a closed database: report, and back off.
        this.report(mapError(e));
        await sleep(100, signal);
        continue;
      }
      if (jobs.length > 0) {
        idleAfterDeadline = false;
        for (const job of jobs) this.start(job);
        continue;
      }
      // Sleep until a commit, the next due job (a run_at or an expiring lease), or close().
      // After a deadline that passed with nothing claimable, look again a little later rather
      // than spin (the due job may be behind a busy write lock).
      const now = Date.now();
      const deadline = due === null ? undefined : Math.max(due, now + (idleAfterDeadline ? 25 : 1));
      let outcome;
      try {
        outcome = await this.queue.db.waitPast(seen, deadline, signal);
      } catch (e) {
        this.report(e);
        outcome = 'timeout';
      }
      idleAfterDeadline = outcome === 'timeout';
    }
  }

  private start(job: Job<T>): void {
    const done = this.execute(job).finally(() => {
      this.active.delete(job);
      if (this.active.size === 0) {
        this.clearHeartbeat();
        this.clearHeartbeat = () => {};
      }
      this.slot?.();
    });
    this.active.set(job, done);
    if (this.active.size === 1) this.armHeartbeat();
  }

  private async execute(job: Job<T>): Promise<void> {
    let cancelTimeout = () => {};
    try {
      let result: R;
      const run = Promise.resolve().then(() => this.processor(job));
      if (this.timeoutMs === undefined) {
        result = await run;
      } else {
        const ms = this.timeoutMs;
        result = await Promise.race([
          run,
          new Promise<never>((_, reject) => {
            cancelTimeout = armTimer(() => {
              const err = new HonkerError('worker.timeout', `handler ran longer than ${ms} ms`);
              job.abort(err);
              reject(err);
            }, ms);
          }),
        ]);
      }
      cancelTimeout();
      if (!job.settled) job.ack(result);
      this.emit('completed', job, result);
    } catch (err) {
      cancelTimeout();
      const e = mapError(err);
      if (!job.settled) {
        try {
          if (e instanceof UnrecoverableError) job.fail(errorText(e));
          else job.retry({ delayMs: this.delayFor(job, e), error: errorText(e) });
        } catch (settleErr) {
          this.report(mapError(settleErr));
        }
      }
      this.emit('failed', job, e);
    }
  }

  private delayFor(job: Job<T>, e: unknown): number | undefined {
    const d = this.retryDelay;
    if (d === undefined) return undefined;
    const v = typeof d === 'function' ? d(job.attempts, e) : d;
    return v === undefined ? undefined : Math.max(0, Math.round(v));
  }

  private armHeartbeat(): void {
    this.clearHeartbeat();
    this.clearHeartbeat = armTimer(() => {
      for (const job of this.active.keys()) {
        if (job.settled) continue;
        try {
          job.heartbeat(this.leaseMs);
        } catch (err) {
          const e = mapError(err);
          if (e instanceof LeaseLostError) {
            job.settled = true;
            job.abort(e);
          }
          this.report(e);
        }
      }
      if (this.active.size > 0) this.armHeartbeat();
    }, this.heartbeatMs);
  }

  private report(e: unknown): void {
    if (this.listenerCount('error') > 0) this.emit('error', e);
    else console.error('honker worker:', e);
  }
}

function errorText(e: unknown): string {
  if (e instanceof Error) return e.stack ?? `${e.name}: ${e.message}`;
  return String(e);
}
