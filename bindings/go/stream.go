package honker

import (
	"context"
	"database/sql"
	"encoding/json"
	"sync"
	"time"
)

// Event is one durable stream event.
type Event struct {
	Offset    int64           `json:"offset"`
	Topic     string          `json:"topic"`
	Key       *string         `json:"key"`
	Payload   json.RawMessage `json:"payload"`
	CreatedMs int64           `json:"created_ms"`
}

// Publish appends an event to topic and commits it; key may be "" for none. It returns the
// event's offset (global, in commit order).
func (h *DB) Publish(ctx context.Context, topic, key string, payload any) (int64, error) {
	return publish(ctx, h.db, topic, key, payload)
}

// PublishTx appends an event inside tx.
func (h *DB) PublishTx(ctx context.Context, tx *sql.Tx, topic, key string, payload any) (int64, error) {
	if err := txOrErr(tx); err != nil {
		return 0, err
	}
	return publish(ctx, tx, topic, key, payload)
}

func publish(ctx context.Context, q execer, topic, key string, payload any) (int64, error) {
	p, err := encodePayload(payload)
	if err != nil {
		return 0, err
	}
	var k any
	if key != "" {
		k = key
	}
	return scalar[int64](ctx, q, "SELECT honker_publish(?, ?, ?)", topic, p, k)
}

// Read returns up to limit events of topic after offset, without waiting.
func (h *DB) Read(ctx context.Context, topic string, after int64, limit int) ([]Event, error) {
	s, err := scalar[string](ctx, h.db, "SELECT honker_read(?, ?, ?)", topic, after, limit)
	if err != nil {
		return nil, err
	}
	var evs []Event
	return evs, decodeJSON(s, &evs)
}

// CommitOffset records that consumer has processed topic up to offset (monotonic: it reports
// false, changing nothing, when offset is not past the committed one).
func (h *DB) CommitOffset(ctx context.Context, consumer, topic string, offset int64) (bool, error) {
	return commitOffset(ctx, h.db, consumer, topic, offset)
}

// CommitOffsetTx commits the offset inside tx, with the effects of the events: exactly-once
// effects for state in the same file.
func (h *DB) CommitOffsetTx(ctx context.Context, tx *sql.Tx, consumer, topic string, offset int64) (bool, error) {
	if err := txOrErr(tx); err != nil {
		return false, err
	}
	return commitOffset(ctx, tx, consumer, topic, offset)
}

func commitOffset(ctx context.Context, q execer, consumer, topic string, offset int64) (bool, error) {
	n, err := scalar[int64](ctx, q, "SELECT honker_commit_offset(?, ?, ?)", consumer, topic, offset)
	return n == 1, err
}

// Offset is consumer's committed offset on topic; ok is false for an unknown consumer.
func (h *DB) Offset(ctx context.Context, consumer, topic string) (offset int64, ok bool, err error) {
	v, err := scalar[sql.NullInt64](ctx, h.db, "SELECT honker_offset(?, ?)", consumer, topic)
	return v.Int64, v.Valid, err
}

// Subscription reads a topic for a named consumer from its committed offset: replay, then live.
// Commit (or CommitTx) advances the consumer; what is not committed is read again by the next
// subscription. It owns one pool connection while open.
type Subscription struct {
	h        *DB
	conn     *sql.Conn
	consumer string
	topic    string
	after    int64
	buf      []Event
	mu       sync.Mutex
	closed   bool
}

// Subscribe starts reading topic as consumer after its committed offset (0 when new).
func (h *DB) Subscribe(ctx context.Context, consumer, topic string) (*Subscription, error) {
	off, _, err := h.Offset(ctx, consumer, topic)
	if err != nil {
		return nil, err
	}
	conn, err := h.db.Conn(ctx)
	if err != nil {
		return nil, err
	}
	return &Subscription{h: h, conn: conn, consumer: consumer, topic: topic, after: off}, nil
}

// Next returns the next event, blocking until one commits or ctx is done.
func (s *Subscription) Next(ctx context.Context) (*Event, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for len(s.buf) == 0 {
		if s.closed {
			return nil, ErrClosed
		}
		txt, err := s.h.wait(ctx, s.conn, "honker_read_wait", []any{s.topic, s.after, 100}, 30*time.Second, "[]")
		if err != nil {
			return nil, err
		}
		if err := decodeJSON(txt, &s.buf); err != nil {
			return nil, err
		}
	}
	e := s.buf[0]
	s.buf = s.buf[1:]
	s.after = e.Offset
	return &e, nil
}

// Commit commits ev's offset for the subscription's consumer.
func (s *Subscription) Commit(ctx context.Context, ev *Event) error {
	_, err := s.h.CommitOffset(ctx, s.consumer, s.topic, ev.Offset)
	return err
}

// CommitTx commits ev's offset inside tx, with the effects of handling it.
func (s *Subscription) CommitTx(ctx context.Context, tx *sql.Tx, ev *Event) error {
	_, err := s.h.CommitOffsetTx(ctx, tx, s.consumer, s.topic, ev.Offset)
	return err
}

// Close releases the subscription's connection.
func (s *Subscription) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	return s.conn.Close()
}
