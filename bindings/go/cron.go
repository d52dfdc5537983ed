package honker

import (
	"context"
	"database/sql"
	"encoding/json"
	"sync"
	"time"
)

// ScheduleOpts are a schedule's optional settings (nil or zero fields: the defaults).
type ScheduleOpts struct {
	TZ          string `json:"tz,omitempty"`
	Priority    int64  `json:"priority,omitempty"`
	MaxAttempts int    `json:"max_attempts,omitempty"`
	// Misfire: "skip" (default), "once" or "all".
	Misfire    string `json:"misfire,omitempty"`
	MisfireCap int    `json:"misfire_cap,omitempty"`
	GraceMs    int64  `json:"grace_ms,omitempty"`
	// Overlap: "allow" (default) or "skip" (no new fire while the last job is live).
	Overlap string `json:"overlap,omitempty"`
	MaxRuns int64  `json:"max_runs,omitempty"`
	EndAtMs int64  `json:"end_at_ms,omitempty"`
}

// Schedule registers (or updates) a cron schedule that enqueues payload on queue at every fire,
// and returns the next fire time (zero when it will not fire again). cron takes 5 or 6 fields or
// "@every 250ms".
func (h *DB) Schedule(ctx context.Context, name, cron, queue string, payload any, opts *ScheduleOpts) (time.Time, error) {
	return schedule(ctx, h.db, name, cron, queue, payload, opts)
}

// ScheduleTx registers the schedule inside tx.
func (h *DB) ScheduleTx(ctx context.Context, tx *sql.Tx, name, cron, queue string, payload any, opts *ScheduleOpts) (time.Time, error) {
	if err := txOrErr(tx); err != nil {
		return time.Time{}, err
	}
	return schedule(ctx, tx, name, cron, queue, payload, opts)
}

func schedule(ctx context.Context, q execer, name, cron, queue string, payload any, opts *ScheduleOpts) (time.Time, error) {
	p, err := encodePayload(payload)
	if err != nil {
		return time.Time{}, err
	}
	var o any
	if opts != nil {
		if o, err = encodeOptions(opts); err != nil {
			return time.Time{}, err
		}
	}
	next, err := scalar[sql.NullInt64](ctx, q, "SELECT honker_schedule(?, ?, ?, ?, ?)", name, cron, queue, p, o)
	if err != nil || !next.Valid {
		return time.Time{}, err
	}
	return time.UnixMilli(next.Int64), nil
}

// Unschedule deletes a schedule; it reports whether it existed.
func (h *DB) Unschedule(ctx context.Context, name string) (bool, error) {
	n, err := scalar[int64](ctx, h.db, "SELECT honker_unschedule(?)", name)
	return n == 1, err
}

// PauseSchedule stops a schedule from firing until ResumeSchedule.
func (h *DB) PauseSchedule(ctx context.Context, name string) error {
	_, err := scalar[int64](ctx, h.db, "SELECT honker_schedule_pause(?)", name)
	return err
}

// ResumeSchedule lets a paused schedule fire again.
func (h *DB) ResumeSchedule(ctx context.Context, name string) error {
	_, err := scalar[int64](ctx, h.db, "SELECT honker_schedule_resume(?)", name)
	return err
}

// ScheduleInfo is one schedule as honker_schedules lists it.
type ScheduleInfo struct {
	Name       string          `json:"name"`
	Cron       string          `json:"cron"`
	Queue      string          `json:"queue"`
	TZ         string          `json:"tz"`
	Payload    json.RawMessage `json:"payload"`
	Paused     bool            `json:"paused"`
	NextFireMs *int64          `json:"next_fire_ms"`
	LastFireMs *int64          `json:"last_fire_ms"`
	Runs       int64           `json:"runs"`
	LastError  *string         `json:"last_error"`
	Upcoming   []int64         `json:"upcoming"`
}

// Schedules lists every schedule.
func (h *DB) Schedules(ctx context.Context) ([]ScheduleInfo, error) {
	s, err := scalar[string](ctx, h.db, "SELECT honker_schedules(1)")
	if err != nil {
		return nil, err
	}
	var out []ScheduleInfo
	return out, decodeJSON(s, &out)
}

// CronNext computes the next fire of expr after t in zone tz ("" is UTC); zero when none.
func (h *DB) CronNext(ctx context.Context, expr string, after time.Time, tz string) (time.Time, error) {
	var z any
	if tz != "" {
		z = tz
	}
	v, err := scalar[sql.NullInt64](ctx, h.db, "SELECT honker_cron_next(?, ?, ?)", expr, after.UnixMilli(), z)
	if err != nil || !v.Valid {
		return time.Time{}, err
	}
	return time.UnixMilli(v.Int64), nil
}

// Fire is one boundary a tick fired.
type Fire struct {
	Schedule string `json:"schedule"`
	FireMs   int64  `json:"fire_ms"`
	JobID    int64  `json:"job_id"`
}

// Tick fires every due boundary of every schedule once (safe from any number of processes at
// once: the file deduplicates fires).
func (h *DB) Tick(ctx context.Context) ([]Fire, error) {
	s, err := scalar[string](ctx, h.db, "SELECT honker_cron_tick()")
	if err != nil {
		return nil, err
	}
	var f []Fire
	return f, decodeJSON(s, &f)
}

// Scheduler ticks the schedules and sleeps until the next fire or until any commit (a new or
// changed schedule), whichever comes first. Any number of schedulers may run, in any processes.
type Scheduler struct {
	h *DB
	// OnFire, if set, is called with every fire (from the scheduler's goroutine).
	OnFire func(Fire)
	// OnError, if set, is called with errors the loop survives (it then retries after a second).
	OnError func(error)

	mu     sync.Mutex
	cancel context.CancelFunc
	done   chan struct{}
}

// NewScheduler returns a scheduler over h; Start it, or Run it in a goroutine of your own.
func NewScheduler(h *DB) *Scheduler { return &Scheduler{h: h} }

// Start runs the scheduler in a goroutine until Stop.
func (s *Scheduler) Start() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.done != nil {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel, s.done = cancel, make(chan struct{})
	go func() {
		defer close(s.done)
		s.Run(ctx) //nolint:errcheck
	}()
}

// Stop ends a started scheduler and waits for it (or for ctx).
func (s *Scheduler) Stop(ctx context.Context) error {
	s.mu.Lock()
	cancel, done := s.cancel, s.done
	s.mu.Unlock()
	if done == nil {
		return nil
	}
	cancel()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Run ticks until ctx is done; it returns ctx.Err().
func (s *Scheduler) Run(ctx context.Context) error {
	conn, err := s.h.db.Conn(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	for {
		// Sample the epoch before looking, so a schedule committed meanwhile wakes the wait.
		epoch, err := s.h.Epoch(ctx)
		var next time.Duration
		if err == nil {
			next, err = s.tickOnce(ctx)
		}
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if s.OnError != nil {
				s.OnError(err)
			}
			next = time.Second
		}
		if _, err := s.h.waitEpoch(ctx, conn, epoch, next); err != nil && ctx.Err() != nil {
			return ctx.Err()
		}
	}
}

// tickOnce fires what is due and returns how long until the earliest next fire.
func (s *Scheduler) tickOnce(ctx context.Context) (time.Duration, error) {
	fires, err := s.h.Tick(ctx)
	if err != nil {
		return 0, err
	}
	for _, f := range fires {
		if s.OnFire != nil {
			s.OnFire(f)
		}
	}
	list, err := s.h.Schedules(ctx)
	if err != nil {
		return 0, err
	}
	next := time.Hour
	now := time.Now().UnixMilli()
	for _, sc := range list {
		if sc.Paused || sc.NextFireMs == nil {
			continue
		}
		d := time.Duration(*sc.NextFireMs-now) * time.Millisecond
		if d < next {
			next = d
		}
	}
	if next < time.Millisecond {
		next = time.Millisecond
	}
	return next, nil
}
