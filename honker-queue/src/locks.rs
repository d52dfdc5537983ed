//! Named locks with fencing tokens, and fixed-window rate limits, shared by every process that
//! opens the database.

use honker_core::Clock;
use rusqlite::{Connection, OptionalExtension, params};

use crate::error::Result;
use crate::queue::check_name;

fn positive(name: &'static str, v: i64) -> Result<()> {
    honker_core::at_least(name, v, 1)?;
    Ok(())
}

/// Take lock `name` for `owner` for `ttl_ms`; returns its fencing token, or `None` while another
/// holder's lease on it runs (the same owner included: renew instead). Every acquire of a name
/// gets a larger token than any before it, so a resource can refuse writes carrying an older one.
///
/// A token is at least the acquire time in milliseconds times 1024 (below 2^53 for two centuries):
/// a file restored from a backup or replica (Litestream) takes the name's counter back to the
/// restore point, and a counter alone would hand out tokens that the lost history already gave
/// to holders a resource may still remember. While the clock moves forward, the time floor
/// keeps every new token above those.
///
/// # Errors
///
/// `queue.bad_name`, `arg.invalid` for `ttl_ms < 1`; SQLite errors.
pub fn lock_acquire(
    conn: &Connection,
    clock: &dyn Clock,
    name: &str,
    owner: &str,
    ttl_ms: i64,
) -> Result<Option<i64>> {
    check_name(name)?;
    positive("ttl_ms", ttl_ms)?;
    let now = clock.now().get();
    let token = conn
        .prepare_cached(
            "INSERT INTO honker_locks (name, owner, token, expires_ms) VALUES (?1, ?2, ?5, ?3)
             ON CONFLICT (name) DO UPDATE SET owner = excluded.owner,
                 token = max(token + 1, excluded.token),
                 expires_ms = excluded.expires_ms
             WHERE expires_ms <= ?4
             RETURNING token",
        )?
        .query_row(
            params![
                name,
                owner,
                now.saturating_add(ttl_ms),
                now,
                now.max(0).saturating_mul(1024).max(1)
            ],
            |r| r.get(0),
        )
        .optional()?;
    if token.is_some() {
        honker_core::kick_after_commit(conn);
    }
    Ok(token)
}

/// Extend lock `name` held under `token` to `ttl_ms` from now; false when `token` no longer
/// holds it (expired, released, or taken by someone else): a stale holder cannot renew.
///
/// # Errors
///
/// `queue.bad_name`, `arg.invalid`; SQLite errors.
pub fn lock_renew(
    conn: &Connection,
    clock: &dyn Clock,
    name: &str,
    token: i64,
    ttl_ms: i64,
) -> Result<bool> {
    check_name(name)?;
    positive("ttl_ms", ttl_ms)?;
    let now = clock.now().get();
    let n = conn
        .prepare_cached(
            "UPDATE honker_locks SET expires_ms = ?3
             WHERE name = ?1 AND token = ?2 AND expires_ms > ?4",
        )?
        .execute(params![name, token, now.saturating_add(ttl_ms), now])?;
    Ok(n > 0)
}

/// Release lock `name` held under `token`; false when `token` does not hold it. The row stays,
/// so the next acquire's token is still larger.
///
/// # Errors
///
/// `queue.bad_name`; SQLite errors.
pub fn lock_release(conn: &Connection, clock: &dyn Clock, name: &str, token: i64) -> Result<bool> {
    check_name(name)?;
    let now = clock.now().get();
    let n = conn
        .prepare_cached(
            "UPDATE honker_locks SET expires_ms = 0, owner = NULL
             WHERE name = ?1 AND token = ?2 AND expires_ms > ?3",
        )?
        .execute(params![name, token, now])?;
    if n > 0 {
        honker_core::kick_after_commit(conn);
    }
    Ok(n > 0)
}

/// Admit one call under rate limit `name`: at most `limit` calls per window of `per_ms`
/// (fixed windows aligned to multiples of `per_ms`). Returns false, counting nothing, when the
/// window is full. Shared across processes; the window restarts when `per_ms` changes.
///
/// # Errors
///
/// `queue.bad_name`, `arg.invalid` for `limit < 0` or `per_ms < 1`; SQLite errors.
pub fn rate_limit(
    conn: &Connection,
    clock: &dyn Clock,
    name: &str,
    limit: i64,
    per_ms: i64,
) -> Result<bool> {
    check_name(name)?;
    positive("per_ms", per_ms)?;
    honker_core::at_least("limit", limit, 0)?;
    if limit == 0 {
        return Ok(false);
    }
    let now = clock.now().get();
    let window = now - now.rem_euclid(per_ms);
    let admitted = conn
        .prepare_cached(
            "INSERT INTO honker_rate_limits (name, per_ms, window_start, count) VALUES (?1, ?2, ?3, 1)
             ON CONFLICT (name) DO UPDATE SET
                 count = CASE WHEN window_start = excluded.window_start AND per_ms = excluded.per_ms
                              THEN count + 1 ELSE 1 END,
                 window_start = excluded.window_start, per_ms = excluded.per_ms
             WHERE window_start <> excluded.window_start OR per_ms <> excluded.per_ms OR count < ?4
             RETURNING count",
        )?
        .query_row(params![name, per_ms, window, limit], |r| r.get::<_, i64>(0))
        .optional()?;
    Ok(admitted.is_some())
}
