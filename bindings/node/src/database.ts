// The Database: a connection with the extension loaded, plus the process's shared waiting thread
// for its file. Every write API runs on this one connection, so inside `transaction(fn)` (or the
// application's own transaction on an attached connection) it commits or rolls back with the
// business rows.
import { statSync } from 'node:fs';
import type { Conn } from './driver.js';
import { openConn, wrapConn } from './driver.js';
import { ArgumentError, DatabaseError, ExtensionError, honkerError, inTransaction, mapError } from './errors.js';
import { compareVersions, findExtension, MIN_EXTENSION_VERSION } from './extension.js';
import type { Json } from './json.js';
import { encode, int, str } from './json.js';
import { isAborted, Waiter, type WaitOutcome } from './waiter.js';
import { Queue, type QueueOptions } from './queue.js';
import { Stream } from './stream.js';
import { Cron } from './cron.js';
import { Lock } from './lock.js';

/** Options of `open()`. */
export interface OpenOptions {
  /** Path of libhonker_ext; default: HONKER_EXT, then the copy the package carries. */
  extensionPath?: string;
  /** Open read-only (reads work; writes fail with `db.read_only`). */
  readonly?: boolean;
}

/** Options of `attach()`. */
export interface AttachOptions {
  /** Path of libhonker_ext; default as for `open()`. */
  extensionPath?: string;
  /**
   * Apply honker's connection settings (WAL, synchronous=NORMAL, busy_timeout, ...) to the
   * application's connection. Default false: the connection's pragmas belong to the application.
   */
  setup?: boolean;
}

/** A pub/sub notification. */
export interface Notification<T = Json> {
  id: number;
  channel: string;
  payload: T;
  createdAt: number;
}

/** Options of `listen()`. */
export interface ListenOptions {
  /** Stops the iteration (the loop ends normally). */
  signal?: AbortSignal;
  /** Start after this notification id; default: only notifications committed from now on. */
  after?: number;
  /** How many notifications one read fetches (default 100). */
  batchSize?: number;
}

/** What the extension offers, detected at open. */
export interface Features {
  version: string;
  setup: boolean;
  info: boolean;
  cancelKeys: boolean;
}

/** What `honker_info()` reports (or the binding's own view of it on an older extension). */
export interface Info {
  version: string;
  schema_version?: number;
  journal_mode?: string;
  wake_backend?: string;
  [key: string]: unknown;
}

/** Open (or create) the database at `path`, load the extension and apply honker's set-up. */
export function open(path: string, options: OpenOptions = {}): Database {
  str('path', path);
  if (path === '' || path === ':memory:' || path.startsWith('file::memory:')) {
    throw new DatabaseError('db.not_file', 'honker needs a database file (cross-connection wakes); :memory: has none');
  }
  const ext = findExtension(options.extensionPath);
  const conn = openConn(path, options.readonly === true);
  try {
    return new Database(conn, ext, { owned: true, setup: options.readonly !== true });
  } catch (e) {
    conn.close();
    throw e;
  }
}

/** Load the extension into a connection the application owns (better-sqlite3 or bun:sqlite). */
export function attach(raw: unknown, options: AttachOptions = {}): Database {
  const ext = findExtension(options.extensionPath);
  return new Database(wrapConn(raw), ext, { owned: false, setup: options.setup === true });
}

export class Database {
  /** The connection every call of this Database runs on. */
  readonly conn: Conn;
  /** What the loaded extension offers. */
  readonly features: Features;
  /** The main database file. */
  readonly filename: string;
  /** Cron schedules and ticks. */
  readonly cron: Cron;
  private readonly ext: string;
  private readonly owned: boolean;
  private waiter: Waiter | undefined;
  private closed = false;
  private readonly queues = new Map<string, Queue<unknown>>();

  /** @internal use `open()` or `attach()`. */
  constructor(conn: Conn, ext: string, how: { owned: boolean; setup: boolean }) {
    this.conn = conn;
    this.ext = ext;
    this.owned = how.owned;
    this.features = loadExtension(conn, ext);
    if (how.setup) this.setup();
    this.filename = String(conn.stmt("SELECT file FROM pragma_database_list WHERE name = 'main'").value() ?? '');
    this.cron = new Cron(this);
  }

  /** Apply honker's connection settings (honker_setup(), or the same PRAGMAs on an older extension). */
  setup(): Json {
    if (this.features.setup) return JSON.parse(String(this.value('SELECT honker_setup()'))) as Json;
    if (this.conn.inTransaction) throw new DatabaseError('setup.in_transaction', 'cannot change connection settings inside a transaction');
    this.conn.exec('PRAGMA busy_timeout = 5000');
    const mode = String(this.value('SELECT journal_mode FROM pragma_journal_mode') ?? '');
    if (mode.toLowerCase() !== 'wal' && this.filename !== '') this.conn.exec('PRAGMA journal_mode = WAL');
    this.conn.exec('PRAGMA synchronous = NORMAL; PRAGMA wal_autocheckpoint = 10000; PRAGMA foreign_keys = ON');
    return { journal_mode: 'wal', synchronous: 'normal', wal_autocheckpoint: 10000, busy_timeout_ms: 5000, foreign_keys: true };
  }

  /** Version, schema version, journal mode and wake backend. */
  info(): Info {
    if (this.features.info) return JSON.parse(String(this.value('SELECT honker_info()'))) as Info;
    return {
      version: this.features.version,
      schema_version: Number(this.value("SELECT value FROM honker_meta WHERE key = 'schema_version'")),
      journal_mode: String(this.value('SELECT journal_mode FROM pragma_journal_mode')),
      wake_backend: String(this.value('SELECT honker_wake_backend()')),
    };
  }

  /**
   * Run `fn` in one transaction (`BEGIN IMMEDIATE`; a savepoint when nested) and return its
   * result; every honker call inside it commits or rolls back with it. `fn` must be synchronous.
   */
  transaction<T>(fn: (db: this) => T): T {
    if (typeof fn !== 'function') throw new ArgumentError('arg.invalid', 'transaction() takes a function');
    return this.conn.transaction(() => {
      const r = fn(this);
      if (r !== null && typeof (r as { then?: unknown })?.then === 'function') {
        throw new ArgumentError('arg.invalid', 'the transaction function must be synchronous (it returned a Promise): a transaction cannot stay open across an await');
      }
      return r;
    });
  }

  /** Publish `payload` on `channel` (in the current transaction if any); the notification id. */
  notify(channel: string, payload: unknown): number {
    return this.value('SELECT honker_notify(?, ?)', str('channel', channel), encode(payload)) as number;
  }

  /**
   * Notifications of `channel`, as they commit, from any process. Ends when `signal` aborts.
   * Waits run on the shared waiting thread: the event loop never blocks.
   */
  async *listen<T = Json>(channel: string, options: ListenOptions = {}): AsyncGenerator<Notification<T>, void, undefined> {
    str('channel', channel);
    const batch = int('batchSize', options.batchSize ?? 100, 1);
    const { signal } = options;
    let after = options.after !== undefined ? int('after', options.after, 0) : (this.value('SELECT COALESCE(MAX(id), 0) FROM honker_notifications') as number);
    while (!isAborted(signal)) {
      if (this.conn.inTransaction) throw inTransaction();
      const seen = this.epoch();
      const rows = JSON.parse(this.value('SELECT honker_listen(?, CAST(? AS INTEGER), CAST(? AS INTEGER))', channel, after, batch) as string) as Array<{ id: number; channel: string; payload: T; created_ms: number }>;
      if (rows.length > 0) {
        for (const r of rows) {
          after = r.id;
          yield { id: r.id, channel: r.channel, payload: r.payload, createdAt: r.created_ms };
          if (isAborted(signal)) return;
        }
        continue;
      }
      if ((await this.waitPast(seen, undefined, signal)) === 'abort') return;
    }
  }

  /** The queue `name`; with options, stores them first (shared by every process and language). */
  queue<T = Json>(name: string, options?: QueueOptions): Queue<T> {
    str('name', name);
    let q = this.queues.get(name);
    if (q === undefined) {
      q = new Queue(this, name);
      this.queues.set(name, q);
    }
    if (options !== undefined) q.configure(options);
    return q as Queue<T>;
  }

  /** The durable stream `topic`. */
  stream<T = Json>(topic: string): Stream<T> {
    return new Stream<T>(this, str('topic', topic));
  }

  /** Try to take the named lock for `ttlMs`; a Lock with its fencing token, or null when held by someone else. */
  lock(name: string, options: { ttlMs: number; owner?: string }): Lock | null {
    str('name', name);
    const ttl = int('ttlMs', options?.ttlMs, 1);
    const owner = options.owner ?? `${process.pid}`;
    const token = this.value('SELECT honker_lock_acquire(?, ?, CAST(? AS INTEGER))', name, str('owner', owner), ttl);
    return token === null || token === undefined ? null : new Lock(this, name, owner, Number(token));
  }

  /** Count one event against the fixed-window limit `name`; true when admitted, false when over (not counted). */
  rateLimit(name: string, options: { limit: number; perMs: number }): boolean {
    const limit = int('limit', options?.limit, 0);
    const per = int('perMs', options.perMs, 1);
    return this.value('SELECT honker_rate_limit(?, CAST(? AS INTEGER), CAST(? AS INTEGER))', str('name', name), limit, per) === 1;
  }

  /** Close the connection (an attached one is left open) and this Database's share of the waiting thread. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.waiter?.release();
    this.waiter = undefined;
    if (this.owned) this.conn.close();
  }

  /**
   * Run one statement of your own on this connection (in the current transaction, if any), such
   * as the effect of `job.complete(tx => tx.run(...))`; the number of rows it changed.
   */
  run(sql: string, ...params: unknown[]): number {
    try {
      return this.conn.run(sql, params);
    } catch (e) {
      throw mapError(e);
    }
  }

  /** One value of a query of your own on this connection (first column of the first row). */
  get(sql: string, ...params: unknown[]): unknown {
    return this.value(sql, ...params);
  }

  /** @internal one SQL function call on this connection, errors mapped to typed errors. */
  value(sql: string, ...args: unknown[]): unknown {
    try {
      return this.conn.stmt(sql).value(...args);
    } catch (e) {
      throw mapError(e);
    }
  }

  /** @internal the wake epoch of this file, sampled before a look (DESIGN §2). */
  epoch(): number {
    return this.value('SELECT honker_epoch()') as number;
  }

  /** @internal wait on the shared thread until the epoch passes `seen`, `deadline` (Date.now ms) or `signal`. */
  waitPast(seen: number, deadline?: number, signal?: AbortSignal): Promise<WaitOutcome> {
    if (this.closed) return Promise.reject(new DatabaseError('db.closed', 'the database is closed'));
    if (this.conn.inTransaction) return Promise.reject(inTransaction());
    if (this.waiter === undefined) {
      if (this.filename === '') throw new DatabaseError('db.not_file', 'waiting needs a database file');
      const st = statSync(this.filename);
      this.waiter = Waiter.acquire(`${st.dev}:${st.ino}`, this.filename, this.ext, this.features.cancelKeys);
    }
    return this.waiter.wait(seen, deadline, signal);
  }

  /** @internal a JSON array result. */
  rows<T>(sql: string, ...args: unknown[]): T[] {
    return JSON.parse(this.value(sql, ...args) as string) as T[];
  }
}

const primed = new Set<string>();

/**
 * Load the extension once into a throwaway in-memory connection, so the library is pinned in
 * the process before it touches a file. A load that then fails on a file (schema.too_new,
 * db.not_honker) makes SQLite dlclose its handle while the connection still holds the functions
 * the failed init registered; with the library pinned, closing that connection stays safe.
 * (Extensions since the pinning fix pin themselves; priming stays for older builds.)
 */
function prime(ext: string): void {
  if (primed.has(ext)) return;
  const mem = openConn(':memory:', false);
  try {
    mem.loadExtension(ext);
  } catch (e) {
    mem.close();
    throw new ExtensionError('ext.load_failed', `cannot load ${ext}: ${(e as Error).message}`, { cause: e });
  }
  // Kept open: it is the connection that cancels waits (honker_wait_cancel is process-wide), so
  // a waiting thread can be stopped even after every Database of its file has closed.
  Waiter.setCancelConn(mem);
  primed.add(ext);
}

function loadExtension(conn: Conn, ext: string): Features {
  prime(ext);
  let version: string | undefined;
  try {
    version = String(conn.stmt('SELECT honker_version()').value());
  } catch {
    try {
      conn.loadExtension(ext);
    } catch (e) {
      // The extension's init error reads "error during initialization: honker: <code>: ...".
      const m = /honker: ([a-z0-9_]+\.[a-z0-9_]+): (.*)$/s.exec((e as Error).message ?? '');
      if (m !== null) throw honkerError(m[1]!, m[2]!, e);
      throw new ExtensionError('ext.load_failed', `cannot load ${ext}: ${(e as Error).message}`, { cause: e });
    }
    version = String(conn.stmt('SELECT honker_version()').value());
  }
  if (compareVersions(version, MIN_EXTENSION_VERSION) < 0) {
    throw new ExtensionError('ext.too_old', `${ext} is version ${version}; this binding needs ${MIN_EXTENSION_VERSION} or newer`);
  }
  const fns = new Map<string, number[]>();
  const list = conn.stmt(
    "SELECT json_group_array(json_array(name, narg)) FROM pragma_function_list WHERE name IN ('honker_setup', 'honker_info', 'honker_wait', 'honker_wait_cancel')",
  );
  for (const [name, narg] of JSON.parse(String(list.value())) as Array<[string, number]>) {
    fns.set(name, [...(fns.get(name) ?? []), narg]);
  }
  const waitArgs = fns.get('honker_wait') ?? [];
  return {
    version,
    setup: fns.has('honker_setup'),
    info: fns.has('honker_info'),
    cancelKeys: fns.has('honker_wait_cancel') && (waitArgs.includes(3) || waitArgs.includes(-1)),
  };
}
