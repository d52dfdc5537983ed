package honker

import (
	"context"
	"database/sql"
	"encoding/json"
	"time"
)

// EnqueueOpts are the optional settings of one enqueue; the zero value (or nil) means none.
type EnqueueOpts struct {
	// Delay makes the job due after this long (exclusive with RunAt).
	Delay time.Duration `json:"-"`
	// RunAt makes the job due at this time.
	RunAt time.Time `json:"-"`
	// Priority: higher runs first among due jobs.
	Priority int64 `json:"priority,omitempty"`
	// MaxAttempts overrides the queue's setting for this job.
	MaxAttempts int `json:"max_attempts,omitempty"`
	// ExpiresIn drops the job if it has not started within this long.
	ExpiresIn time.Duration `json:"-"`
	// DedupKey: a second enqueue with the same key while the first job is live returns its id.
	DedupKey string `json:"dedup_key,omitempty"`
}

type enqueueJSON struct {
	EnqueueOpts
	DelayMs     *int64 `json:"delay_ms,omitempty"`
	RunAtMs     *int64 `json:"run_at_ms,omitempty"`
	ExpiresInMs *int64 `json:"expires_in_ms,omitempty"`
}

func (o *EnqueueOpts) encode() (any, error) {
	if o == nil {
		return nil, nil
	}
	j := enqueueJSON{EnqueueOpts: *o}
	if o.Delay != 0 {
		j.DelayMs = ptr(o.Delay.Milliseconds())
	}
	if !o.RunAt.IsZero() {
		j.RunAtMs = ptr(o.RunAt.UnixMilli())
	}
	if o.ExpiresIn != 0 {
		j.ExpiresInMs = ptr(o.ExpiresIn.Milliseconds())
	}
	return encodeOptions(j)
}

func ptr[T any](v T) *T { return &v }

// Enqueue adds a job to queue and commits it; payload is any JSON-encodable value.
func (h *DB) Enqueue(ctx context.Context, queue string, payload any, opts *EnqueueOpts) (int64, error) {
	return enqueue(ctx, h.db, queue, payload, opts)
}

// EnqueueTx adds a job inside tx: it exists only if tx commits.
func (h *DB) EnqueueTx(ctx context.Context, tx *sql.Tx, queue string, payload any, opts *EnqueueOpts) (int64, error) {
	if err := txOrErr(tx); err != nil {
		return 0, err
	}
	return enqueue(ctx, tx, queue, payload, opts)
}

func enqueue(ctx context.Context, q execer, queue string, payload any, opts *EnqueueOpts) (int64, error) {
	p, err := encodePayload(payload)
	if err != nil {
		return 0, err
	}
	o, err := opts.encode()
	if err != nil {
		return 0, err
	}
	if o == nil {
		return scalar[int64](ctx, q, "SELECT honker_enqueue(?, ?)", queue, p)
	}
	return scalar[int64](ctx, q, "SELECT honker_enqueue(?, ?, ?)", queue, p, o)
}

// EnqueueMany adds several jobs in one statement and returns their ids.
func (h *DB) EnqueueMany(ctx context.Context, queue string, payloads []any, opts *EnqueueOpts) ([]int64, error) {
	return enqueueMany(ctx, h.db, queue, payloads, opts)
}

// EnqueueManyTx is EnqueueMany inside tx.
func (h *DB) EnqueueManyTx(ctx context.Context, tx *sql.Tx, queue string, payloads []any, opts *EnqueueOpts) ([]int64, error) {
	if err := txOrErr(tx); err != nil {
		return nil, err
	}
	return enqueueMany(ctx, tx, queue, payloads, opts)
}

func enqueueMany(ctx context.Context, q execer, queue string, payloads []any, opts *EnqueueOpts) ([]int64, error) {
	raw := make([]json.RawMessage, len(payloads))
	for i, p := range payloads {
		s, err := encodePayload(p)
		if err != nil {
			return nil, err
		}
		raw[i] = json.RawMessage(s)
	}
	arr, err := json.Marshal(raw)
	if err != nil {
		return nil, errorf(ErrPayloadNotJSON.Code, "%v", err)
	}
	o, err := opts.encode()
	if err != nil {
		return nil, err
	}
	s, err := scalar[string](ctx, q, "SELECT honker_enqueue_batch(?, ?, ?)", queue, string(arr), o)
	if err != nil {
		return nil, err
	}
	var ids []int64
	return ids, decodeJSON(s, &ids)
}

// Job is a claimed job whose payload decodes into T (json.RawMessage for the untyped API).
type Job[T any] struct {
	ID             int64           `json:"id"`
	Queue          string          `json:"queue"`
	Payload        T               `json:"-"`
	Raw            json.RawMessage `json:"payload"`
	Attempts       int             `json:"attempts"`
	MaxAttempts    int             `json:"max_attempts"`
	LeaseToken     int64           `json:"lease_token"`
	LeaseExpiresMs int64           `json:"lease_expires_ms"`
	Priority       int64           `json:"priority"`
}

func decodeJSON(s string, v any) error {
	if err := json.Unmarshal([]byte(s), v); err != nil {
		return errorf("binding.bad_json", "cannot decode the extension's answer: %v", err)
	}
	return nil
}

func decodeJobs(s string) ([]*Job[json.RawMessage], error) {
	var jobs []*Job[json.RawMessage]
	if err := decodeJSON(s, &jobs); err != nil {
		return nil, err
	}
	for _, j := range jobs {
		j.Payload = j.Raw
	}
	return jobs, nil
}

// Claim takes up to n due jobs of queue for worker under a lease (0: the queue's lease), without
// waiting.
func (h *DB) Claim(ctx context.Context, queue, worker string, n int, lease time.Duration) ([]*Job[json.RawMessage], error) {
	s, err := scalar[string](ctx, h.db, "SELECT honker_claim(?, ?, ?, ?)", queue, worker, n, leaseArg(lease))
	if err != nil {
		return nil, err
	}
	return decodeJobs(s)
}

// ClaimWait is Claim that blocks until a job is due, timeout passes (nil, nil) or ctx is done.
// It runs on a connection of its own taken from the pool for the wait.
func (h *DB) ClaimWait(ctx context.Context, queue, worker string, n int, lease, timeout time.Duration) ([]*Job[json.RawMessage], error) {
	conn, err := h.db.Conn(ctx)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	return h.claimWaitOn(ctx, conn, queue, worker, n, lease, timeout)
}

func (h *DB) claimWaitOn(ctx context.Context, conn *sql.Conn, queue, worker string, n int, lease, timeout time.Duration) ([]*Job[json.RawMessage], error) {
	s, err := h.wait(ctx, conn, "honker_claim_wait", []any{queue, worker, n, leaseArg(lease)}, timeout, "[]")
	if err != nil {
		return nil, err
	}
	return decodeJobs(s)
}

func leaseArg(lease time.Duration) any {
	if lease <= 0 {
		return nil
	}
	return lease.Milliseconds()
}

// Ack completes a held job (deletes it, or moves it to history when the queue keeps one).
func (h *DB) Ack(ctx context.Context, id, token int64) error { return ack(ctx, h.db, id, token) }

// AckTx acks inside tx, so the job's effect and its completion commit together.
func (h *DB) AckTx(ctx context.Context, tx *sql.Tx, id, token int64) error {
	if err := txOrErr(tx); err != nil {
		return err
	}
	return ack(ctx, tx, id, token)
}

func ack(ctx context.Context, q execer, id, token int64) error {
	_, err := scalar[int64](ctx, q, "SELECT honker_ack(?, ?)", id, token)
	return err
}

// RetryResult says what a retry did: "retrying" (due again at RunAt) or "dead".
type RetryResult struct {
	State   string `json:"state"`
	RunAtMs int64  `json:"run_at_ms"`
}

// Retry gives a held job back for another attempt after delay (negative: the queue's backoff),
// recording errText; with no attempts left it goes to the dead letters.
func (h *DB) Retry(ctx context.Context, id, token int64, delay time.Duration, errText string) (RetryResult, error) {
	return retry(ctx, h.db, id, token, delay, errText)
}

// RetryTx is Retry inside tx.
func (h *DB) RetryTx(ctx context.Context, tx *sql.Tx, id, token int64, delay time.Duration, errText string) (RetryResult, error) {
	if err := txOrErr(tx); err != nil {
		return RetryResult{}, err
	}
	return retry(ctx, tx, id, token, delay, errText)
}

func retry(ctx context.Context, q execer, id, token int64, delay time.Duration, errText string) (RetryResult, error) {
	var d any
	if delay >= 0 {
		d = delay.Milliseconds()
	}
	var r RetryResult
	s, err := scalar[string](ctx, q, "SELECT honker_retry(?, ?, ?, ?)", id, token, d, errText)
	if err != nil {
		return r, err
	}
	return r, decodeJSON(s, &r)
}

// Release gives a held job back at once without using an attempt (graceful shutdown).
func (h *DB) Release(ctx context.Context, id, token int64) error {
	_, err := scalar[int64](ctx, h.db, "SELECT honker_release(?, ?)", id, token)
	return err
}

// Fail sends a held job to the dead letters with errText.
func (h *DB) Fail(ctx context.Context, id, token int64, errText string) error {
	_, err := scalar[int64](ctx, h.db, "SELECT honker_fail(?, ?, ?)", id, token, errText)
	return err
}

// Heartbeat extends a held job's lease by extend and returns the new expiry.
func (h *DB) Heartbeat(ctx context.Context, id, token int64, extend time.Duration) (time.Time, error) {
	ms, err := scalar[int64](ctx, h.db, "SELECT honker_heartbeat(?, ?, ?)", id, token, extend.Milliseconds())
	return time.UnixMilli(ms), err
}

// Cancel deletes a job that is not running; it reports whether there was one.
func (h *DB) Cancel(ctx context.Context, id int64) (bool, error) {
	n, err := scalar[int64](ctx, h.db, "SELECT honker_cancel(?)", id)
	return n == 1, err
}

// JobInfo is a job as honker_job reports it.
type JobInfo struct {
	ID          int64           `json:"id"`
	Queue       string          `json:"queue"`
	State       string          `json:"state"`
	Payload     json.RawMessage `json:"payload"`
	Attempts    int             `json:"attempts"`
	MaxAttempts int             `json:"max_attempts"`
	Priority    int64           `json:"priority"`
	RunAtMs     *int64          `json:"run_at_ms"`
	LastError   *string         `json:"last_error"`
	DeadReason  *string         `json:"dead_reason"`
	Worker      *string         `json:"worker"`
	CreatedMs   int64           `json:"created_ms"`
}

// Job looks a job up (live, dead or in history); nil when there is none.
func (h *DB) Job(ctx context.Context, id int64) (*JobInfo, error) {
	s, err := scalar[sql.NullString](ctx, h.db, "SELECT honker_job(?)", id)
	if err != nil || !s.Valid {
		return nil, err
	}
	var j JobInfo
	return &j, decodeJSON(s.String, &j)
}

// QueueStats are a queue's counts.
type QueueStats struct {
	Queue     string `json:"queue"`
	Pending   int64  `json:"pending"`
	Scheduled int64  `json:"scheduled"`
	Running   int64  `json:"running"`
	Retrying  int64  `json:"retrying"`
	Dead      int64  `json:"dead"`
	NextDueMs *int64 `json:"next_due_ms"`
}

// Stats returns queue's counts.
func (h *DB) Stats(ctx context.Context, queue string) (QueueStats, error) {
	var st QueueStats
	s, err := scalar[string](ctx, h.db, "SELECT honker_queue_stats(?)", queue)
	if err != nil {
		return st, err
	}
	return st, decodeJSON(s, &st)
}

// QueueOptions are a queue's stored settings; nil fields are left as they are.
type QueueOptions struct {
	LeaseMs         *int64 `json:"lease_ms,omitempty"`
	MaxAttempts     *int   `json:"max_attempts,omitempty"`
	BackoffBaseMs   *int64 `json:"backoff_base_ms,omitempty"`
	BackoffCapMs    *int64 `json:"backoff_cap_ms,omitempty"`
	DeadRetentionMs *int64 `json:"dead_retention_ms,omitempty"`
	MaxPayloadBytes *int64 `json:"max_payload_bytes,omitempty"`
	Paused          *bool  `json:"paused,omitempty"`
	KeepHistoryMs   *int64 `json:"keep_history_ms,omitempty"`
}

// ConfigureQueue stores options for queue and returns the queue's settings as JSON.
func (h *DB) ConfigureQueue(ctx context.Context, queue string, opts QueueOptions) (json.RawMessage, error) {
	o, err := json.Marshal(opts)
	if err != nil {
		return nil, err
	}
	s, err := scalar[string](ctx, h.db, "SELECT honker_queue_configure(?, ?)", queue, string(o))
	return json.RawMessage(s), err
}

// DeadJobs lists up to limit dead letters of queue, newest first, as JSON.
func (h *DB) DeadJobs(ctx context.Context, queue string, limit int) (json.RawMessage, error) {
	s, err := scalar[string](ctx, h.db, "SELECT honker_dead_list(?, ?)", queue, limit)
	return json.RawMessage(s), err
}

// RequeueDead moves a dead letter back to its queue.
func (h *DB) RequeueDead(ctx context.Context, id int64) (bool, error) {
	n, err := scalar[int64](ctx, h.db, "SELECT honker_dead_requeue(?)", id)
	return n == 1, err
}

// SaveResult stores a job's result (ttl 0: kept until purged).
func (h *DB) SaveResult(ctx context.Context, id int64, value any, ttl time.Duration) error {
	return saveResult(ctx, h.db, id, value, ttl)
}

// SaveResultTx is SaveResult inside tx.
func (h *DB) SaveResultTx(ctx context.Context, tx *sql.Tx, id int64, value any, ttl time.Duration) error {
	if err := txOrErr(tx); err != nil {
		return err
	}
	return saveResult(ctx, tx, id, value, ttl)
}

func saveResult(ctx context.Context, q execer, id int64, value any, ttl time.Duration) error {
	v, err := encodePayload(value)
	if err != nil {
		return err
	}
	var t any
	if ttl > 0 {
		t = ttl.Milliseconds()
	}
	_, err = scalar[int64](ctx, q, "SELECT honker_result_save(?, ?, ?)", id, v, t)
	return err
}

// Result returns a job's stored result as JSON, or nil.
func (h *DB) Result(ctx context.Context, id int64) (json.RawMessage, error) {
	s, err := scalar[sql.NullString](ctx, h.db, "SELECT honker_result_get(?)", id)
	if err != nil || !s.Valid {
		return nil, err
	}
	return json.RawMessage(s.String), nil
}
