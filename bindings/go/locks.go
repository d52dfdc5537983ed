package honker

import (
	"context"
	"database/sql"
	"time"
)

// Lock is a held named lock; Token is its fencing token (larger for every later holder).
type Lock struct {
	h     *DB
	Name  string
	Token int64
}

// TryLock takes the named lock for owner for ttl; it returns nil (no error) when another owner
// holds it.
func (h *DB) TryLock(ctx context.Context, name, owner string, ttl time.Duration) (*Lock, error) {
	tok, err := scalar[sql.NullInt64](ctx, h.db, "SELECT honker_lock_acquire(?, ?, ?)", name, owner, ttl.Milliseconds())
	if err != nil || !tok.Valid {
		return nil, err
	}
	return &Lock{h: h, Name: name, Token: tok.Int64}, nil
}

// Renew extends the lock by ttl; false when it was lost (expired and taken by another owner).
func (l *Lock) Renew(ctx context.Context, ttl time.Duration) (bool, error) {
	n, err := scalar[int64](ctx, l.h.db, "SELECT honker_lock_renew(?, ?, ?)", l.Name, l.Token, ttl.Milliseconds())
	return n == 1, err
}

// Release gives the lock up; false when it was no longer held under this token.
func (l *Lock) Release(ctx context.Context) (bool, error) {
	n, err := scalar[int64](ctx, l.h.db, "SELECT honker_lock_release(?, ?)", l.Name, l.Token)
	return n == 1, err
}

// Allow counts one use of the named fixed-window rate limit (limit uses per window) and reports
// whether it is admitted; a refused use is not counted.
func (h *DB) Allow(ctx context.Context, name string, limit int, per time.Duration) (bool, error) {
	n, err := scalar[int64](ctx, h.db, "SELECT honker_rate_limit(?, ?, ?)", name, limit, per.Milliseconds())
	return n == 1, err
}
