package honker_test

import (
	"context"
	"database/sql"
	"errors"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	honker "github.com/honker/honker/bindings/go"
)

type email struct {
	To string `json:"to"`
	N  int    `json:"n"`
}

func TestWorkerRunsConcurrentlyAndAcks(t *testing.T) {
	db, _ := openTemp(t)
	ctx := ctxT(t)
	const jobs = 40
	for i := 0; i < jobs; i++ {
		if _, err := db.Enqueue(ctx, "mail", email{To: "a@b", N: i}, nil); err != nil {
			t.Fatal(err)
		}
	}
	var mu sync.Mutex
	seen := map[int]bool{}
	var inFlight, maxInFlight atomic.Int32
	w := honker.NewWorker(db, "mail", func(ctx context.Context, j *honker.Job[email]) error {
		cur := inFlight.Add(1)
		defer inFlight.Add(-1)
		for {
			m := maxInFlight.Load()
			if cur <= m || maxInFlight.CompareAndSwap(m, cur) {
				break
			}
		}
		time.Sleep(5 * time.Millisecond)
		mu.Lock()
		seen[j.Payload.N] = true
		mu.Unlock()
		return nil
	}, &honker.WorkerOptions{Concurrency: 4})
	if err := w.Start(ctx); err != nil {
		t.Fatal(err)
	}
	eventually(t, "all jobs acked", func() bool {
		st, _ := db.Stats(ctx, "mail")
		return st.Pending+st.Running+st.Scheduled == 0
	})
	if err := w.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if len(seen) != jobs {
		t.Fatalf("saw %d distinct jobs", len(seen))
	}
	if maxInFlight.Load() > 4 {
		t.Fatalf("ran %d at once with concurrency 4", maxInFlight.Load())
	}
}

func TestWorkerRetriesReturnedErrorsAndPanicsWithDelay(t *testing.T) {
	db, _ := openTemp(t)
	ctx := ctxT(t)
	id, _ := db.Enqueue(ctx, "flaky", email{N: 1}, nil)
	var calls atomic.Int32
	w := honker.NewWorker(db, "flaky", func(ctx context.Context, j *honker.Job[email]) error {
		switch calls.Add(1) {
		case 1:
			return honker.RetryIn(10*time.Millisecond, errors.New("smtp down"))
		case 2:
			panic("oops")
		}
		return nil
	}, &honker.WorkerOptions{RetryDelay: func(int, error) time.Duration { return 10 * time.Millisecond }})
	w.Start(ctx)
	eventually(t, "third attempt", func() bool { return calls.Load() >= 3 })
	eventually(t, "job gone", func() bool { j, _ := db.Job(ctx, id); return j == nil })
	w.Stop(ctx)
	if calls.Load() != 3 {
		t.Fatalf("calls %d", calls.Load())
	}
}

func TestWorkerDiscardAndUndecodablePayloadDeadLetter(t *testing.T) {
	db, _ := openTemp(t)
	ctx := ctxT(t)
	a, _ := db.Enqueue(ctx, "d", email{N: 1}, nil)
	b, _ := db.Enqueue(ctx, "d", "not an object", nil)
	w := honker.NewWorker(db, "d", func(ctx context.Context, j *honker.Job[email]) error {
		return honker.Discard(errors.New("bad address"))
	}, nil)
	w.Start(ctx)
	eventually(t, "both dead", func() bool { st, _ := db.Stats(ctx, "d"); return st.Dead == 2 })
	w.Stop(ctx)
	for _, id := range []int64{a, b} {
		j, err := db.Job(ctx, id)
		if err != nil || j == nil || j.State != "dead" || j.Attempts != 1 {
			t.Fatalf("job %d: %+v %v", id, j, err)
		}
	}
}

func TestStopReleasesHeldJobsWithoutUsingAnAttempt(t *testing.T) {
	db, _ := openTemp(t)
	ctx := ctxT(t)
	id, _ := db.Enqueue(ctx, "slow", email{N: 1}, nil)
	started := make(chan struct{})
	w := honker.NewWorker(db, "slow", func(ctx context.Context, j *honker.Job[email]) error {
		close(started)
		<-ctx.Done() // a handler that honours its context
		return ctx.Err()
	}, nil)
	w.Start(ctx)
	<-started
	sctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if err := w.Stop(sctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("stop: %v", err)
	}
	eventually(t, "job released", func() bool {
		j, _ := db.Job(ctx, id)
		return j != nil && j.State == "pending"
	})
	j, _ := db.Job(ctx, id)
	if j.Attempts != 0 {
		t.Fatalf("attempts %d after release, want 0", j.Attempts)
	}
}

func TestHeartbeatsKeepALongJobLeased(t *testing.T) {
	db, _ := openTemp(t)
	ctx := ctxT(t)
	id, _ := db.Enqueue(ctx, "long", email{N: 1}, nil)
	release := make(chan struct{})
	var beats atomic.Int32
	w := honker.NewWorker(db, "long", func(ctx context.Context, j *honker.Job[email]) error {
		<-release
		return nil
	}, &honker.WorkerOptions{Lease: 300 * time.Millisecond, Heartbeat: 50 * time.Millisecond,
		OnError: func(err error) { t.Errorf("worker error: %v", err) }})
	w.Start(ctx)
	// Watch the lease expiry move forward: heartbeats are happening.
	var first int64
	eventually(t, "the job running", func() bool {
		return db.SQL().QueryRow("SELECT lease_expires FROM honker_jobs WHERE id = ? AND lease_expires IS NOT NULL", id).Scan(&first) == nil
	})
	eventually(t, "the lease extended twice", func() bool {
		var now int64
		db.SQL().QueryRow("SELECT lease_expires FROM honker_jobs WHERE id = ?", id).Scan(&now)
		if now > first {
			first = now
			beats.Add(1)
		}
		return beats.Load() >= 2
	})
	close(release)
	eventually(t, "acked", func() bool { j, _ := db.Job(ctx, id); return j == nil })
	w.Stop(ctx)
}

func TestTxWorkerCommitsEffectAndAckTogether(t *testing.T) {
	db, _ := openTemp(t)
	ctx := ctxT(t)
	db.SQL().Exec("CREATE TABLE sent(n INTEGER)")
	ok, _ := db.Enqueue(ctx, "tx", email{N: 1}, nil)
	bad, _ := db.Enqueue(ctx, "tx", email{N: 2}, &honker.EnqueueOpts{MaxAttempts: 1})
	w := honker.NewTxWorker(db, "tx", func(ctx context.Context, tx *sql.Tx, j *honker.Job[email]) error {
		if _, err := tx.ExecContext(ctx, "INSERT INTO sent VALUES (?)", j.Payload.N); err != nil {
			return err
		}
		if j.Payload.N == 2 {
			return errors.New("after the insert")
		}
		return nil
	}, nil)
	w.Start(ctx)
	eventually(t, "both settled", func() bool {
		a, _ := db.Job(ctx, ok)
		b, _ := db.Job(ctx, bad)
		return a == nil && b != nil && b.State == "dead"
	})
	w.Stop(ctx)
	if n := count(t, db.SQL(), "SELECT count(*) FROM sent"); n != 1 {
		t.Fatalf("sent rows %d: the failed handler's insert must roll back", n)
	}
}

func TestStoppedWorkersLeaveNoGoroutines(t *testing.T) {
	db, _ := openTemp(t)
	ctx := ctxT(t)
	before := runtime.NumGoroutine()
	for i := 0; i < 3; i++ {
		w := honker.NewWorker(db, "idle", func(context.Context, *honker.Job[email]) error { return nil },
			&honker.WorkerOptions{Concurrency: 3})
		if err := w.Start(ctx); err != nil {
			t.Fatal(err)
		}
		if err := w.Stop(ctx); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, "goroutines to drain", func() bool { return runtime.NumGoroutine() <= before+1 })
}
