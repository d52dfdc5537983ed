// One waiting thread per database file per process. The thread blocks in
// `honker_wait(epoch, timeout_ms, cancel_key)` on its own connection and posts each new epoch to
// the main thread; every listener, worker and subscriber of the process awaits "epoch past the
// one I sampled" here and then does its own non-blocking read on the main thread. The event loop
// never blocks. When nobody waits, the thread parks on an Atomics word (the extension's watcher
// then stops polling too) and is unref'd, so it never holds the process open; once its database
// is closed it holds the process only the few milliseconds it takes to end.
import { Worker } from 'node:worker_threads';
import { join } from 'node:path';
import type { Conn } from './driver.js';
import { isBun } from './driver.js';
import { DatabaseError, honkerError, WakeError } from './errors.js';
import { here } from './here.js';

/** How a wait ended. */
export type WaitOutcome = 'wake' | 'timeout' | 'abort';

/** Live counts of what the binding holds, for monitoring and leak tests. */
export interface Diagnostics {
  /** Waits parked on a waiting thread. */
  pendingWaits: number;
  /** Timers the binding has armed and not yet cleared or fired. */
  timers: number;
  /** `abort` listeners the binding has added to AbortSignals and not yet removed. */
  abortListeners: number;
  /** Waiting threads alive (one per database file with a listener or worker). */
  threads: number;
  /** Thread waits stopped through `honker_wait_cancel` (when the extension has cancel keys). */
  cancelledWaits: number;
}

const counters = { timers: 0, abortListeners: 0, pending: 0, cancelled: 0 };

/** What the binding currently holds. */
export function diagnostics(): Diagnostics {
  return { pendingWaits: counters.pending, timers: counters.timers, abortListeners: counters.abortListeners, threads: Waiter.count(), cancelledWaits: counters.cancelled };
}

// Shared words with the thread: STATE is 0 idle, 1 wanted, 2 stop; SEQ numbers each wait's key.
const STATE = 0;
const SEQ = 1;
const IDLE_LINGER_MS = 200;

interface Pending {
  seen: number;
  done: (outcome: WaitOutcome, err?: unknown) => void;
}

/** A connection with the extension loaded, kept for `honker_wait_cancel` (it is process-wide). */
let cancelConn: Conn | undefined;
let threadCounter = 0;
let exitHookInstalled = false;

/** A timer the diagnostics count. */
export function armTimer(fn: () => void, ms: number): () => void {
  counters.timers++;
  let live = true;
  const t = setTimeout(() => {
    live = false;
    counters.timers--;
    fn();
  }, Math.max(0, Math.min(ms, 2_147_483_647)));
  return () => {
    if (live) {
      live = false;
      counters.timers--;
      clearTimeout(t);
    }
  };
}

/** Add an abort listener the diagnostics count; returns its remover. */
export function onAbort(signal: AbortSignal | undefined, fn: () => void): () => void {
  if (signal === undefined) return noop;
  counters.abortListeners++;
  let live = true;
  const h = () => {
    if (live) {
      live = false;
      counters.abortListeners--;
    }
    fn();
  };
  signal.addEventListener('abort', h, { once: true });
  return () => {
    if (live) {
      live = false;
      counters.abortListeners--;
      signal.removeEventListener('abort', h);
    }
  };
}

function noop(): void {}

/** Whether `signal` has aborted (a function, so TypeScript does not narrow it across awaits). */
export function isAborted(signal: AbortSignal | undefined): boolean {
  return signal?.aborted === true;
}

/** Resolve after `ms`, or at once when `signal` aborts; leaves no timer or listener behind. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise<void>((resolve) => {
    if (signal?.aborted === true) return resolve();
    let off = noop;
    const cancel = armTimer(() => {
      off();
      resolve();
    }, ms);
    off = onAbort(signal, () => {
      cancel();
      resolve();
    });
  });
}

export class Waiter {
  private static readonly byFile = new Map<string, Waiter>();

  static count(): number {
    return Waiter.byFile.size;
  }

  /** The waiter of the file `key` (dev:ino), started if needed; pair with `release()`. */
  static acquire(key: string, path: string, ext: string, hasCancel: boolean): Waiter {
    let w = Waiter.byFile.get(key);
    if (w === undefined || w.dead) {
      w = new Waiter(key, path, ext, hasCancel);
      Waiter.byFile.set(key, w);
    }
    w.refs++;
    return w;
  }

  /** The connection that cancels waits (an in-memory one the binding keeps open). */
  static setCancelConn(conn: Conn): void {
    cancelConn ??= conn;
  }

  private refs = 0;
  private readonly pending = new Set<Pending>();
  private epoch = -1;
  private dead = false;
  private readonly words: Int32Array;
  private readonly worker: Worker;
  private readonly keyBase: string;
  private stopIdle: () => void = noop;
  private referenced = false;
  private stopped = false;

  private constructor(
    private readonly key: string,
    path: string,
    ext: string,
    private readonly hasCancel: boolean,
  ) {
    this.words = new Int32Array(new SharedArrayBuffer(8));
    this.keyBase = `${isBun ? 'bun' : 'node'}-${process.pid}-${++threadCounter}`;
    this.worker = new Worker(join(here, 'waiter-thread.js'), {
      workerData: { path, ext, words: this.words, hasCancel, keyBase: this.keyBase },
    });
    this.worker.unref();
    this.worker.on('message', (m: { t: string; e?: number; code?: string; message?: string }) => {
      if (m.t === 'e') this.advance(m.e!);
      else if (m.t === 'x') this.failAll(honkerError(m.code ?? 'wake.watcher_died', m.message ?? 'waiting thread failed'));
    });
    this.worker.on('error', (e) => this.die(new WakeError('wake.watcher_died', `waiting thread failed: ${e.message}`, { cause: e })));
    this.worker.on('exit', () => this.die(new WakeError('wake.watcher_died', 'waiting thread exited')));
    if (!exitHookInstalled) {
      exitHookInstalled = true;
      process.on('exit', () => {
        for (const w of Waiter.byFile.values()) w.stop();
      });
    }
  }

  /** Resolve `'wake'` once the file's epoch is past `seen`, `'timeout'` at `deadline` (Date.now ms), `'abort'` on `signal`. */
  wait(seen: number, deadline?: number, signal?: AbortSignal): Promise<WaitOutcome> {
    return new Promise<WaitOutcome>((resolve, reject) => {
      if (this.dead) return reject(new WakeError('wake.watcher_died', 'waiting thread is gone'));
      if (this.stopped) return reject(new DatabaseError('db.closed', 'the database was closed'));
      if (signal?.aborted) return resolve('abort');
      if (this.epoch > seen) return resolve('wake');
      let clearTimer = noop;
      let removeAbort = noop;
      const p: Pending = {
        seen,
        done: (outcome, err) => {
          if (!this.pending.delete(p)) return;
          counters.pending--;
          clearTimer();
          removeAbort();
          if (this.pending.size === 0) this.goIdle();
          if (err !== undefined) reject(err);
          else resolve(outcome);
        },
      };
      this.pending.add(p);
      counters.pending++;
      if (deadline !== undefined) clearTimer = armTimer(() => p.done('timeout'), deadline - Date.now());
      removeAbort = onAbort(signal, () => p.done('abort'));
      this.want();
    });
  }

  release(): void {
    if (--this.refs <= 0) {
      this.stop();
      Waiter.byFile.delete(this.key);
    }
  }

  private advance(e: number): void {
    if (e <= this.epoch) return;
    this.epoch = e;
    for (const p of this.pending) if (e > p.seen) p.done('wake');
  }

  private want(): void {
    if (this.stopped) return;
    this.stopIdle();
    this.stopIdle = noop;
    if (!this.referenced) {
      this.referenced = true;
      this.worker.ref();
    }
    if (Atomics.load(this.words, STATE) !== 1) {
      Atomics.store(this.words, STATE, 1);
      Atomics.notify(this.words, STATE);
    }
  }

  private goIdle(): void {
    if (this.stopped) return;
    if (this.referenced) {
      this.referenced = false;
      this.worker.unref();
    }
    this.stopIdle();
    // Park the thread only after a short linger, so a listener that loops (read, wait, read)
    // does not stop and restart the thread's wait on every turn.
    this.stopIdle = armTimer(() => {
      this.stopIdle = noop;
      if (this.pending.size === 0 && Atomics.load(this.words, STATE) === 1) {
        Atomics.store(this.words, STATE, 0);
        this.cancelCurrent();
      }
    }, IDLE_LINGER_MS);
  }

  /** Stop the thread's running wait through the extension's cancel mechanism (when it has one). */
  private cancelCurrent(): void {
    if (!this.hasCancel) return;
    if (cancelConn === undefined) return;
    const key = `${this.keyBase}-${Atomics.load(this.words, SEQ)}`;
    try {
      counters.cancelled += Number(cancelConn.stmt('SELECT honker_wait_cancel(?)').value(key)) > 0 ? 1 : 0;
    } catch {
      // Nothing to do: the thread's wait then ends at its own timeout.
    }
  }

  private stop(): void {
    this.stopped = true;
    this.stopIdle();
    this.stopIdle = noop;
    Atomics.store(this.words, STATE, 2);
    Atomics.notify(this.words, STATE);
    this.cancelCurrent();
    // Keep the process alive until the thread ends by itself (the cancelled wait returns in
    // milliseconds, then the loop sees STATE 2 and closes its connection). Unref'd, a process
    // whose last step was db.close() started exiting at once and terminated the thread while
    // its cancelled wait was throwing, which better-sqlite3 turns into a V8 fatal error
    // (`ToLocalChecked Empty MaybeLocal`, exit 134) about 1 run in 40 of the README quickstart.
    this.worker.ref();
    this.failAll(new DatabaseError('db.closed', 'the database was closed while waiting'));
  }

  private failAll(err: unknown): void {
    for (const p of this.pending) p.done('wake', err);
  }

  private die(err: unknown): void {
    if (this.dead) return;
    this.dead = true;
    if (Waiter.byFile.get(this.key) === this) Waiter.byFile.delete(this.key);
    this.stopIdle();
    this.failAll(err);
  }
}
