// Named locks with fencing tokens.
import type { Database } from './database.js';
import { int } from './json.js';

/** A held named lock. Pass `token` to whatever the lock protects: a newer holder always has a larger one. */
export class Lock {
  /** @internal */
  constructor(
    private readonly db: Database,
    readonly name: string,
    readonly owner: string,
    readonly token: number,
  ) {}

  /** Extend the lock to `ttlMs` from now; false if it was lost. */
  renew(ttlMs: number): boolean {
    return this.db.value('SELECT honker_lock_renew(?, CAST(? AS INTEGER), CAST(? AS INTEGER))', this.name, this.token, int('ttlMs', ttlMs, 1)) === 1;
  }

  /** Release the lock; false if it was no longer held under this token. */
  release(): boolean {
    return this.db.value('SELECT honker_lock_release(?, CAST(? AS INTEGER))', this.name, this.token) === 1;
  }
}
