// The two SQLite drivers behind one small interface: better-sqlite3 under Node, bun:sqlite under Bun.
import { requireHere } from './here.js';

/** Which driver a connection uses. */
export type DriverKind = 'better-sqlite3' | 'bun:sqlite';

/** True when running under Bun. */
export const isBun: boolean = typeof (process.versions as Record<string, string | undefined>)['bun'] === 'string';

/** A prepared statement that returns its first column of its first row. */
export interface Stmt {
  value(...args: unknown[]): unknown;
}

/** A connection through either driver, with a per-connection statement cache. */
export class Conn {
  readonly kind: DriverKind;
  /** The driver's own connection object (a better-sqlite3 `Database` or a bun:sqlite `Database`). */
  readonly raw: any;
  private readonly cache = new Map<string, Stmt>();
  private readonly runCache = new Map<string, any>();

  constructor(raw: any, kind: DriverKind) {
    this.raw = raw;
    this.kind = kind;
  }

  /** A cached statement for `sql`; `sql` must select exactly one column. */
  stmt(sql: string): Stmt {
    let s = this.cache.get(sql);
    if (s === undefined) {
      s = this.kind === 'bun:sqlite' ? bunStmt(this.raw, sql) : betterStmt(this.raw, sql);
      this.cache.set(sql, s);
    }
    return s;
  }

  /** Run one statement with parameters, ignoring any rows; the number of rows it changed. */
  run(sql: string, args: unknown[]): number {
    let s = this.runCache.get(sql);
    if (s === undefined) {
      s = this.raw.prepare(sql);
      this.runCache.set(sql, s);
    }
    return Number(s.run(...args).changes);
  }

  /** Run SQL that returns nothing (PRAGMAs, BEGIN, ...). */
  exec(sql: string): void {
    this.raw.exec(sql);
  }

  get inTransaction(): boolean {
    return Boolean(this.raw.inTransaction);
  }

  /** Run `fn` in `BEGIN IMMEDIATE ... COMMIT` (a savepoint when nested), rolling back if it throws. */
  transaction<T>(fn: () => T): T {
    return this.raw.transaction(fn).immediate();
  }

  loadExtension(path: string): void {
    this.raw.loadExtension(path);
  }

  close(): void {
    this.cache.clear();
    this.runCache.clear();
    this.raw.close();
  }

  get open(): boolean {
    return this.kind === 'bun:sqlite' ? this.raw.__honkerClosed !== true : Boolean(this.raw.open);
  }
}

function betterStmt(raw: any, sql: string): Stmt {
  const s = raw.prepare(sql).pluck();
  return { value: (...args: unknown[]) => s.get(...args) };
}

function bunStmt(raw: any, sql: string): Stmt {
  const s = raw.prepare(sql);
  return {
    value: (...args: unknown[]) => {
      const rows: unknown[][] = s.values(...args);
      return rows.length > 0 ? rows[0]![0] : undefined;
    },
  };
}

/** Open a connection to `path` with the runtime's driver. */
export function openConn(path: string, readonly: boolean): Conn {
  if (isBun) {
    const { Database } = requireHere('bun:sqlite');
    const raw = readonly ? new Database(path, { readonly: true }) : new Database(path, { create: true, readwrite: true });
    const close = raw.close.bind(raw);
    raw.close = (...a: unknown[]) => {
      raw.__honkerClosed = true;
      return close(...a);
    };
    return new Conn(raw, 'bun:sqlite');
  }
  let Database: any;
  try {
    Database = requireHere('better-sqlite3');
  } catch (e) {
    throw new Error(
      'honker: better-sqlite3 is not installed; under Node, honker needs it (npm install better-sqlite3)',
      { cause: e },
    );
  }
  return new Conn(new Database(path, { readonly }), 'better-sqlite3');
}

/** Wrap a connection the application opened itself. */
export function wrapConn(raw: any): Conn {
  if (raw === null || typeof raw !== 'object') {
    throw new TypeError('attach() takes a better-sqlite3 or bun:sqlite Database');
  }
  if (typeof raw.pragma === 'function' && typeof raw.prepare === 'function') return new Conn(raw, 'better-sqlite3');
  if (typeof raw.query === 'function' && typeof raw.prepare === 'function') return new Conn(raw, 'bun:sqlite');
  throw new TypeError('attach() takes a better-sqlite3 or bun:sqlite Database');
}
