package honker

import (
	"context"
	"database/sql"
	"encoding/json"
	"sync"
	"time"
)

// Notification is one pub/sub message.
type Notification struct {
	ID        int64           `json:"id"`
	Channel   string          `json:"channel"`
	Payload   json.RawMessage `json:"payload"`
	CreatedMs int64           `json:"created_ms"`
}

// Notify publishes payload on channel and commits it; listeners in every process wake.
func (h *DB) Notify(ctx context.Context, channel string, payload any) (int64, error) {
	return notify(ctx, h.db, channel, payload)
}

// NotifyTx publishes inside tx: listeners see it only if tx commits.
func (h *DB) NotifyTx(ctx context.Context, tx *sql.Tx, channel string, payload any) (int64, error) {
	if err := txOrErr(tx); err != nil {
		return 0, err
	}
	return notify(ctx, tx, channel, payload)
}

func notify(ctx context.Context, q execer, channel string, payload any) (int64, error) {
	p, err := encodePayload(payload)
	if err != nil {
		return 0, err
	}
	return scalar[int64](ctx, q, "SELECT honker_notify(?, ?)", channel, p)
}

// FromNow, as the afterID of Listen, starts after the channel's latest notification.
const FromNow int64 = -1

// Listener receives the notifications of one channel, in id order. It owns one connection of the
// pool while open; Close it when done.
type Listener struct {
	h       *DB
	conn    *sql.Conn
	channel string
	after   int64
	buf     []Notification
	mu      sync.Mutex
	closed  bool
}

// Listen starts a listener on channel after the notification id afterID (0: from the oldest
// kept, FromNow: only new ones).
func (h *DB) Listen(ctx context.Context, channel string, afterID int64) (*Listener, error) {
	if afterID == FromNow {
		// The channel's newest id; the (channel, id) index answers it without a scan.
		var last sql.NullInt64
		err := h.db.QueryRowContext(ctx, "SELECT max(id) FROM honker_notifications WHERE channel = ?", channel).Scan(&last)
		if err != nil {
			return nil, fromDriver(err)
		}
		afterID = last.Int64
	}
	conn, err := h.db.Conn(ctx)
	if err != nil {
		return nil, err
	}
	return &Listener{h: h, conn: conn, channel: channel, after: afterID}, nil
}

// Next returns the next notification, blocking until one commits or ctx is done.
func (l *Listener) Next(ctx context.Context) (*Notification, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for len(l.buf) == 0 {
		if l.closed {
			return nil, ErrClosed
		}
		s, err := l.h.wait(ctx, l.conn, "honker_listen_wait", []any{l.channel, l.after, 100}, 30*time.Second, "[]")
		if err != nil {
			return nil, err
		}
		if err := decodeJSON(s, &l.buf); err != nil {
			return nil, err
		}
	}
	n := l.buf[0]
	l.buf = l.buf[1:]
	l.after = n.ID
	return &n, nil
}

// Close releases the listener's connection. Cancel the context of a running Next first.
func (l *Listener) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil
	}
	l.closed = true
	return l.conn.Close()
}
