package honker

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"
)

// Handler works one job whose payload decoded into T. A nil return acks the job; an error
// retries it (after the queue's backoff, or RetryIn's delay), Discard dead-letters it. A panic
// is an error. ctx is cancelled when the job's lease is lost, its timeout passes or a Stop gives
// up waiting.
type Handler[T any] func(ctx context.Context, job *Job[T]) error

// TxHandler works one job inside tx; the worker acks in the same tx and commits, so the job's
// effects and its completion are one commit. An error rolls tx back and retries the job.
type TxHandler[T any] func(ctx context.Context, tx *sql.Tx, job *Job[T]) error

// WorkerOptions tune a Worker; the zero value is usable.
type WorkerOptions struct {
	// Name identifies the worker in honker_job (default go-<host>-<pid>-<n>).
	Name string
	// Concurrency is how many jobs run at once (default 1).
	Concurrency int
	// Lease is how long a claim holds a job without a heartbeat (default 30 s).
	Lease time.Duration
	// Heartbeat is how often a running job's lease is extended (default Lease/3).
	Heartbeat time.Duration
	// Timeout, if set, cancels a handler's ctx after this long (the job is then retried).
	Timeout time.Duration
	// RetryDelay, if set, picks the delay of a retry from the attempt number and the error;
	// otherwise the queue's exponential backoff applies. RetryIn overrides both.
	RetryDelay func(attempt int, err error) time.Duration
	// OnError, if set, receives errors the worker survives (a failed ack, a lost lease, ...).
	OnError func(error)
}

var workerSeq atomic.Int64

// Worker claims jobs of one queue and runs a handler on each, Concurrency at a time, with
// automatic heartbeats, retries and a graceful Stop.
type Worker[T any] struct {
	h       *DB
	queue   string
	handler Handler[T]
	txh     TxHandler[T]
	o       WorkerOptions

	mu      sync.Mutex
	started bool
	stopped bool
	stop    context.CancelFunc // stops the claim loop
	hard    context.CancelFunc // cancels running handlers
	hardCtx context.Context
	claimer chan struct{}
	running sync.WaitGroup
	held    map[int64]int64 // job id -> lease token of jobs being worked
	err     error
}

// NewWorker returns a worker running handler on the jobs of queue; Start it.
func NewWorker[T any](h *DB, queue string, handler Handler[T], opts *WorkerOptions) *Worker[T] {
	return newWorker[T](h, queue, handler, nil, opts)
}

// NewTxWorker returns a worker whose handler runs in a transaction that also acks the job.
func NewTxWorker[T any](h *DB, queue string, handler TxHandler[T], opts *WorkerOptions) *Worker[T] {
	return newWorker[T](h, queue, nil, handler, opts)
}

func newWorker[T any](h *DB, queue string, handler Handler[T], txh TxHandler[T], opts *WorkerOptions) *Worker[T] {
	var o WorkerOptions
	if opts != nil {
		o = *opts
	}
	if o.Concurrency <= 0 {
		o.Concurrency = 1
	}
	if o.Lease <= 0 {
		o.Lease = 30 * time.Second
	}
	if o.Heartbeat <= 0 {
		o.Heartbeat = o.Lease / 3
	}
	if o.Name == "" {
		host, _ := os.Hostname()
		o.Name = fmt.Sprintf("go-%s-%d-%d", host, os.Getpid(), workerSeq.Add(1))
	}
	return &Worker[T]{h: h, queue: queue, handler: handler, txh: txh, o: o, held: map[int64]int64{}}
}

// Start begins claiming. It takes a pool connection for the claim loop.
func (w *Worker[T]) Start(ctx context.Context) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.started {
		return errorf(ErrInvalidArgument.Code, "worker already started")
	}
	conn, err := w.h.db.Conn(ctx)
	if err != nil {
		return err
	}
	w.started = true
	loopCtx, stop := context.WithCancel(context.Background())
	w.hardCtx, w.hard = context.WithCancel(context.Background())
	w.stop, w.claimer = stop, make(chan struct{})
	go w.claimLoop(loopCtx, conn)
	return nil
}

// Run starts the worker and stops it when ctx is done, giving running jobs until stopTimeout
// to finish.
func (w *Worker[T]) Run(ctx context.Context, stopTimeout time.Duration) error {
	if err := w.Start(ctx); err != nil {
		return err
	}
	<-ctx.Done()
	sctx, cancel := context.WithTimeout(context.Background(), stopTimeout)
	defer cancel()
	return w.Stop(sctx)
}

// Stop stops claiming, waits for running jobs until ctx is done, then cancels those still
// running and releases their jobs without using an attempt. It returns ctx.Err() if it had to.
func (w *Worker[T]) Stop(ctx context.Context) error {
	w.mu.Lock()
	if !w.started || w.stopped {
		w.mu.Unlock()
		return nil
	}
	w.stopped = true
	w.mu.Unlock()
	w.stop()
	<-w.claimer
	finished := make(chan struct{})
	go func() { w.running.Wait(); close(finished) }()
	select {
	case <-finished:
		w.hard()
		return nil
	case <-ctx.Done():
	}
	w.hard()
	w.mu.Lock()
	held := make(map[int64]int64, len(w.held))
	for id, tok := range w.held {
		held[id] = tok
	}
	w.mu.Unlock()
	for id, tok := range held {
		if err := w.h.Release(context.Background(), id, tok); err != nil && !errors.Is(err, ErrLeaseLost) {
			w.report(err)
		}
	}
	return ctx.Err()
}

func (w *Worker[T]) report(err error) {
	if w.o.OnError != nil && err != nil {
		w.o.OnError(err)
	}
}

func (w *Worker[T]) claimLoop(ctx context.Context, conn *sql.Conn) {
	defer close(w.claimer)
	defer conn.Close()
	slots := make(chan struct{}, w.o.Concurrency)
	for {
		// Take one free slot (waiting for it), then every other free one.
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
			return
		}
		n := 1
		for more := true; more && n < w.o.Concurrency; {
			select {
			case slots <- struct{}{}:
				n++
			default:
				more = false
			}
		}
		jobs, err := w.h.claimWaitOn(ctx, conn, w.queue, w.o.Name, n, w.o.Lease, 30*time.Second)
		if err != nil {
			for i := 0; i < n; i++ {
				<-slots
			}
			if ctx.Err() != nil {
				return
			}
			w.report(err)
			select { // a failing database: do not spin
			case <-time.After(time.Second):
			case <-ctx.Done():
				return
			}
			continue
		}
		for i := len(jobs); i < n; i++ {
			<-slots
		}
		for _, j := range jobs {
			w.mu.Lock()
			w.held[j.ID] = j.LeaseToken
			w.mu.Unlock()
			w.running.Add(1)
			go func(j *Job[json.RawMessage]) {
				defer func() { <-slots }()
				defer w.running.Done()
				w.work(j)
				w.mu.Lock()
				delete(w.held, j.ID)
				w.mu.Unlock()
			}(j)
		}
	}
}

// work runs one job: decode, handler under heartbeats, then ack, retry or fail.
func (w *Worker[T]) work(raw *Job[json.RawMessage]) {
	job := &Job[T]{ID: raw.ID, Queue: raw.Queue, Raw: raw.Raw, Attempts: raw.Attempts,
		MaxAttempts: raw.MaxAttempts, LeaseToken: raw.LeaseToken, LeaseExpiresMs: raw.LeaseExpiresMs, Priority: raw.Priority}
	bg := context.Background()
	if err := json.Unmarshal(raw.Raw, &job.Payload); err != nil {
		// A payload that cannot become T will never work: dead-letter it now.
		w.report(w.h.Fail(bg, job.ID, job.LeaseToken, "payload does not decode: "+err.Error()))
		return
	}
	ctx, cancel := context.WithCancel(w.hardCtx)
	defer cancel()
	if w.o.Timeout > 0 {
		var c2 context.CancelFunc
		ctx, c2 = context.WithTimeout(ctx, w.o.Timeout)
		defer c2()
	}
	var lost atomic.Bool
	hbDone := make(chan struct{})
	hbStop := make(chan struct{})
	go func() {
		defer close(hbDone)
		t := time.NewTicker(w.o.Heartbeat)
		defer t.Stop()
		for {
			select {
			case <-hbStop:
				return
			case <-t.C:
				if _, err := w.h.Heartbeat(bg, job.ID, job.LeaseToken, w.o.Lease); err != nil {
					if errors.Is(err, ErrLeaseLost) {
						lost.Store(true)
						cancel()
						return
					}
					w.report(err)
				}
			}
		}
	}()
	var err error
	if w.txh != nil {
		err = w.runTx(ctx, job)
	} else {
		err = safeCall(func() error { return w.handler(ctx, job) })
	}
	close(hbStop)
	<-hbDone
	if lost.Load() {
		w.report(fmt.Errorf("job %d: %w", job.ID, ErrLeaseLost))
		return
	}
	if err == nil {
		if w.txh == nil {
			w.reportUnlessLost(w.h.Ack(bg, job.ID, job.LeaseToken))
		}
		return
	}
	if w.hardCtx.Err() != nil {
		return // Stop gave up on it; Stop releases the job.
	}
	var discard *DiscardError
	if errors.As(err, &discard) {
		w.reportUnlessLost(w.h.Fail(bg, job.ID, job.LeaseToken, err.Error()))
		return
	}
	delay := time.Duration(-1)
	var ra *RetryError
	if errors.As(err, &ra) {
		delay = ra.Delay
	} else if w.o.RetryDelay != nil {
		delay = w.o.RetryDelay(job.Attempts, err)
	}
	_, rerr := w.h.Retry(bg, job.ID, job.LeaseToken, delay, err.Error())
	w.reportUnlessLost(rerr)
}

func (w *Worker[T]) reportUnlessLost(err error) {
	if err != nil {
		w.report(fmt.Errorf("worker %s: %w", w.o.Name, err))
	}
}

func (w *Worker[T]) runTx(ctx context.Context, job *Job[T]) error {
	tx, err := w.h.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	err = safeCall(func() error { return w.txh(ctx, tx, job) })
	if err == nil {
		err = w.h.AckTx(ctx, tx, job.ID, job.LeaseToken)
	}
	if err == nil {
		err = tx.Commit()
		if err == nil {
			return nil
		}
	}
	tx.Rollback() //nolint:errcheck
	return err
}

// PanicError is the error a handler's panic becomes.
type PanicError struct {
	Value any
	Stack []byte
}

func (p *PanicError) Error() string { return fmt.Sprintf("handler panicked: %v", p.Value) }

func safeCall(f func() error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = &PanicError{Value: r, Stack: debug.Stack()}
		}
	}()
	return f()
}
