package honker

import (
	"context"
	"database/sql"
	"errors"
	"strconv"
	"strings"
	"time"
)

// fallbackSlice bounds each wait when the extension has no cancel keys, so a cancelled context is
// noticed within about this long.
const fallbackSlice = 200 * time.Millisecond

// wait runs the blocking SQL function fn(args..., timeout_ms[, cancel_key]) on conn and returns
// its text result. A done ctx stops it: with cancel keys through honker_wait_cancel from another
// connection of the pool, else between bounded slices. It then returns ctx.Err(). A timeout
// returns empty (the function's own empty answer, passed as empty).
func (h *DB) wait(ctx context.Context, conn *sql.Conn, fn string, args []any, timeout time.Duration, empty string) (string, error) {
	if err := ctx.Err(); err != nil {
		return "", err
	}
	if timeout <= 0 {
		timeout = time.Duration(1<<31-1) * time.Millisecond
	}
	if !h.canCancel {
		q := call(fn, len(args)+1)
		deadline := time.Now().Add(timeout)
		for {
			var s string
			err := conn.QueryRowContext(context.Background(), q, append(args, sliceMs(deadline))...).Scan(&s)
			if err != nil {
				return "", fromDriver(err)
			}
			if s != empty || !time.Now().Before(deadline) {
				return s, nil
			}
			if err := ctx.Err(); err != nil {
				return "", err
			}
		}
	}
	key := h.nextKey()
	done := make(chan struct{})
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		select {
		case <-ctx.Done():
			// From the pool, not conn: conn is the one blocked in the wait.
			h.db.ExecContext(context.Background(), "SELECT honker_wait_cancel(?)", key) //nolint:errcheck
		case <-done:
		}
	}()
	var s string
	// The statement gets a background context: mattn's interrupt on a done ctx cannot stop a
	// running SQL function, and would fail the connection's next statement instead.
	err := conn.QueryRowContext(context.Background(), call(fn, len(args)+2), append(args, timeout.Milliseconds(), key)...).Scan(&s)
	close(done)
	<-stopped
	if err != nil {
		err = fromDriver(err)
		if errors.Is(err, ErrWaitCancelled) && ctx.Err() != nil {
			return "", ctx.Err()
		}
		return "", err
	}
	return s, nil
}

// WaitForChange blocks until another commit to the database file after epoch, timeout or ctx
// done, and returns the epoch then. Take the first epoch with Epoch.
func (h *DB) WaitForChange(ctx context.Context, epoch int64, timeout time.Duration) (int64, error) {
	conn, err := h.db.Conn(ctx)
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	return h.waitEpoch(ctx, conn, epoch, timeout)
}

func (h *DB) waitEpoch(ctx context.Context, conn *sql.Conn, epoch int64, timeout time.Duration) (int64, error) {
	if !h.canCancel {
		// Bounded slices; an unchanged epoch is the "empty" answer.
		deadline := time.Now().Add(timeout)
		for {
			var e int64
			if err := conn.QueryRowContext(context.Background(), "SELECT honker_wait(?, ?)", epoch, sliceMs(deadline)).Scan(&e); err != nil {
				return 0, fromDriver(err)
			}
			if e != epoch || !time.Now().Before(deadline) {
				return e, nil
			}
			if err := ctx.Err(); err != nil {
				return 0, err
			}
		}
	}
	s, err := h.wait(ctx, conn, "honker_wait", []any{epoch}, timeout, "")
	if err != nil {
		return 0, err
	}
	return strconv.ParseInt(s, 10, 64)
}

// Epoch is the current wake epoch of the database file (starting the process's watcher).
func (h *DB) Epoch(ctx context.Context) (int64, error) {
	return scalar[int64](ctx, h.db, "SELECT honker_epoch()")
}

// call is "SELECT fn(?, ?, ...)" with n placeholders.
func call(fn string, n int) string {
	return "SELECT " + fn + "(" + strings.TrimSuffix(strings.Repeat("?, ", n), ", ") + ")"
}

// sliceMs is the next bounded slice of a fallback wait ending at deadline, in ms (at least 1).
func sliceMs(deadline time.Time) int64 {
	d := time.Until(deadline)
	if d > fallbackSlice {
		d = fallbackSlice
	}
	if d < time.Millisecond {
		d = time.Millisecond
	}
	return d.Milliseconds()
}
