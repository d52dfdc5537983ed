package honker_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	honker "github.com/honker/honker/bindings/go"
)

func TestOpenAppliesSettingsAndRefusesMemory(t *testing.T) {
	db, _ := openTemp(t)
	var mode string
	var timeout, fk, sync int64
	sq := db.SQL()
	if err := sq.QueryRow("PRAGMA journal_mode").Scan(&mode); err != nil || mode != "wal" {
		t.Fatalf("journal_mode %q %v", mode, err)
	}
	sq.QueryRow("PRAGMA busy_timeout").Scan(&timeout)
	sq.QueryRow("PRAGMA foreign_keys").Scan(&fk)
	sq.QueryRow("PRAGMA synchronous").Scan(&sync)
	if timeout != 5000 || fk != 1 || sync != 1 {
		t.Fatalf("busy_timeout=%d foreign_keys=%d synchronous=%d", timeout, fk, sync)
	}
	if db.Version() == "" {
		t.Fatal("no version")
	}
	_, err := honker.Open(":memory:")
	if !errors.Is(err, honker.ErrDBNotFile) {
		t.Fatalf("memory: %v", err)
	}
}

func TestMissingExtensionNamesThePath(t *testing.T) {
	// A fresh process is needed for another extension path; the driver reads it once. Instead
	// check Attach on a plain mattn pool, which has no honker functions.
	sq, err := sql.Open("sqlite3", filepath.Join(t.TempDir(), "plain.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer sq.Close()
	_, err = honker.Attach(sq)
	if !errors.Is(err, honker.ErrExtension) || !strings.Contains(err.Error(), honker.DriverName) {
		t.Fatalf("attach plain: %v", err)
	}
}

func TestAttachSharesTheApplicationsTransaction(t *testing.T) {
	path := filepath.Join(t.TempDir(), "app.db")
	sq, err := sql.Open(honker.DriverName, "file:"+path+"?_txlock=immediate")
	if err != nil {
		t.Fatal(err)
	}
	defer sq.Close()
	db, err := honker.Attach(sq)
	if err != nil {
		t.Fatal(err)
	}
	ctx := ctxT(t)
	if _, err := sq.Exec("CREATE TABLE orders(id INTEGER PRIMARY KEY)"); err != nil {
		t.Fatal(err)
	}
	// Rolled back: neither the order nor the job nor the notification exists.
	tx, _ := sq.BeginTx(ctx, nil)
	tx.Exec("INSERT INTO orders VALUES (1)")
	if _, err := db.EnqueueTx(ctx, tx, "emails", map[string]any{"order": 1}, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := db.NotifyTx(ctx, tx, "orders", 1); err != nil {
		t.Fatal(err)
	}
	tx.Rollback()
	if n := count(t, sq, "SELECT count(*) FROM honker_jobs"); n != 0 {
		t.Fatalf("rolled-back job visible: %d", n)
	}
	// Committed: both.
	tx, _ = sq.BeginTx(ctx, nil)
	tx.Exec("INSERT INTO orders VALUES (2)")
	id, err := db.EnqueueTx(ctx, tx, "emails", map[string]any{"order": 2}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	j, err := db.Job(ctx, id)
	if err != nil || j == nil || string(j.Payload) != `{"order":2}` {
		t.Fatalf("job %+v %v", j, err)
	}
}

func TestBadInputIsTypedAndWritesNothing(t *testing.T) {
	db, _ := openTemp(t)
	ctx := ctxT(t)
	cases := []struct {
		name string
		run  func() error
		want *honker.Error
	}{
		{"nan", func() error { _, e := db.Enqueue(ctx, "q", math.NaN(), nil); return e }, honker.ErrPayloadNotJSON},
		{"big int", func() error { _, e := db.Enqueue(ctx, "q", map[string]any{"n": int64(1) << 60}, nil); return e }, honker.ErrPayloadNotJSON},
		{"big negative", func() error { _, e := db.Enqueue(ctx, "q", []int64{-9007199254740993}, nil); return e }, honker.ErrPayloadNotJSON},
		{"raw not json", func() error { _, e := db.Enqueue(ctx, "q", json.RawMessage(`{"a":`), nil); return e }, honker.ErrPayloadNotJSON},
		{"channel func", func() error { _, e := db.Notify(ctx, "c", func() {}); return e }, honker.ErrPayloadNotJSON},
		{"empty queue", func() error { _, e := db.Enqueue(ctx, "", 1, nil); return e }, honker.ErrQueueBadName},
		{"delay+run_at", func() error {
			_, e := db.Enqueue(ctx, "q", 1, &honker.EnqueueOpts{Delay: time.Second, RunAt: time.Now()})
			return e
		}, honker.ErrQueueBadOption},
		{"bad cron", func() error { _, e := db.Schedule(ctx, "s", "nope", "q", 1, nil); return e }, honker.ErrCronBadExpression},
		{"bad zone", func() error {
			_, e := db.Schedule(ctx, "s", "* * * * *", "q", 1, &honker.ScheduleOpts{TZ: "Mars/Base"})
			return e
		}, honker.ErrCronUnknownZone},
		{"stale ack", func() error { return db.Ack(ctx, 12345, 1) }, honker.ErrLeaseLost},
		{"nil tx", func() error { _, e := db.EnqueueTx(ctx, nil, "q", 1, nil); return e }, honker.ErrInvalidArgument},
	}
	for _, c := range cases {
		err := c.run()
		var he *honker.Error
		if !errors.Is(err, c.want) || !errors.As(err, &he) || he.Code != c.want.Code {
			t.Errorf("%s: got %v, want code %s", c.name, err, c.want.Code)
		}
	}
	for _, table := range []string{"honker_jobs", "honker_notifications", "honker_schedules"} {
		if n := count(t, db.SQL(), "SELECT count(*) FROM "+table); n != 0 {
			t.Errorf("%s has %d rows after refused calls", table, n)
		}
	}
	// The largest exact integer is fine.
	if _, err := db.Enqueue(ctx, "q", map[string]any{"n": int64(1) << 53, "s": "12345678901234567890"}, nil); err != nil {
		t.Fatalf("2^53: %v", err)
	}
}

func TestBusyStaysTheDriversError(t *testing.T) {
	_, path := openTemp(t)
	a, err := sql.Open(honker.DriverName, "file:"+path+"?_busy_timeout=0&_txlock=immediate")
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	a.SetMaxOpenConns(2)
	ha, err := honker.Attach(a)
	if err != nil {
		t.Fatal(err)
	}
	ctx := ctxT(t)
	tx, err := a.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	conn, _ := a.Conn(ctx)
	defer conn.Close()
	conn.ExecContext(ctx, "PRAGMA busy_timeout=0")
	var id int64
	err = conn.QueryRowContext(ctx, "SELECT honker_enqueue('q', '1')").Scan(&id)
	var he *honker.Error
	if err == nil || errors.As(err, &he) || !strings.Contains(strings.ToLower(err.Error()), "locked") {
		t.Fatalf("want the driver's busy error, got %v", err)
	}
	_ = ha
}

func TestClaimAckRetryAndDeadLetter(t *testing.T) {
	db, _ := openTemp(t)
	ctx := ctxT(t)
	if _, err := db.ConfigureQueue(ctx, "q", honker.QueueOptions{MaxAttempts: ptr(2)}); err != nil {
		t.Fatal(err)
	}
	ids, err := db.EnqueueMany(ctx, "q", []any{map[string]int{"n": 1}, map[string]int{"n": 2}}, nil)
	if err != nil || len(ids) != 2 {
		t.Fatal(ids, err)
	}
	jobs, err := db.Claim(ctx, "q", "w", 10, time.Minute)
	if err != nil || len(jobs) != 2 {
		t.Fatal(jobs, err)
	}
	if err := db.Ack(ctx, jobs[0].ID, jobs[0].LeaseToken); err != nil {
		t.Fatal(err)
	}
	if err := db.Ack(ctx, jobs[0].ID, jobs[0].LeaseToken); !errors.Is(err, honker.ErrLeaseLost) {
		t.Fatalf("double ack: %v", err)
	}
	r, err := db.Retry(ctx, jobs[1].ID, jobs[1].LeaseToken, 0, "boom")
	if err != nil || r.State != "retrying" {
		t.Fatal(r, err)
	}
	again, err := db.ClaimWait(ctx, "q", "w", 1, time.Minute, 10*time.Second)
	if err != nil || len(again) != 1 || again[0].Attempts != 2 {
		t.Fatalf("%+v %v", again, err)
	}
	r, err = db.Retry(ctx, again[0].ID, again[0].LeaseToken, 0, "boom again")
	if err != nil || r.State != "dead" {
		t.Fatal(r, err)
	}
	st, _ := db.Stats(ctx, "q")
	if st.Dead != 1 || st.Pending != 0 {
		t.Fatalf("%+v", st)
	}
	if ok, err := db.RequeueDead(ctx, again[0].ID); !ok || err != nil {
		t.Fatal(ok, err)
	}
}

func ptr[T any](v T) *T { return &v }

func TestClaimWaitReturnsPromptlyOnCancel(t *testing.T) {
	db, _ := openTemp(t)
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		_, err := db.ClaimWait(ctx, "empty", "w", 1, 0, time.Hour)
		errc <- err
	}()
	time.Sleep(50 * time.Millisecond) // let it block (not a timing assert: either order passes)
	cancel()
	select {
	case err := <-errc:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("want context.Canceled, got %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("ClaimWait did not return after cancel")
	}
}

func TestWaitInTransactionIsRefusedTyped(t *testing.T) {
	db, _ := openTemp(t)
	ctx := ctxT(t)
	tx, _ := db.SQL().BeginTx(ctx, nil)
	defer tx.Rollback()
	var s string
	err := tx.QueryRowContext(ctx, "SELECT honker_claim_wait('q','w',1,NULL,10)").Scan(&s)
	if !errors.Is(fromDriverForTest(err), honker.ErrWaitInTransaction) {
		t.Fatalf("%v", err)
	}
}

// fromDriverForTest maps a raw driver error the way the package does, through a public call.
func fromDriverForTest(err error) error { return honker.MapError(err) }

func TestListenAcrossConnectionsAndFromNow(t *testing.T) {
	db, path := openTemp(t)
	ctx := ctxT(t)
	if _, err := db.Notify(ctx, "ch", "old"); err != nil {
		t.Fatal(err)
	}
	l, err := db.Listen(ctx, "ch", honker.FromNow)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	other, err := honker.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	go func() {
		time.Sleep(20 * time.Millisecond)
		other.Notify(context.Background(), "ch", map[string]string{"hello": "world"})
	}()
	n, err := l.Next(ctx)
	if err != nil || string(n.Payload) != `{"hello":"world"}` {
		t.Fatalf("%+v %v", n, err)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := l.Next(cctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled Next: %v", err)
	}
}

func TestStreamSubscribeCommitsInTheHandlersTransaction(t *testing.T) {
	db, _ := openTemp(t)
	ctx := ctxT(t)
	sq := db.SQL()
	sq.Exec("CREATE TABLE totals(n INTEGER)")
	sq.Exec("INSERT INTO totals VALUES (0)")
	for i := 1; i <= 3; i++ {
		if _, err := db.Publish(ctx, "t", "", map[string]int{"add": i}); err != nil {
			t.Fatal(err)
		}
	}
	sub, err := db.Subscribe(ctx, "summer", "t")
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ {
		ev, err := sub.Next(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var p struct{ Add int }
		json.Unmarshal(ev.Payload, &p)
		tx, _ := sq.BeginTx(ctx, nil)
		tx.ExecContext(ctx, "UPDATE totals SET n = n + ?", p.Add)
		if err := sub.CommitTx(ctx, tx, ev); err != nil {
			t.Fatal(err)
		}
		if err := tx.Commit(); err != nil {
			t.Fatal(err)
		}
	}
	sub.Close()
	// A new subscription resumes after the committed offset: only the third event.
	sub2, _ := db.Subscribe(ctx, "summer", "t")
	defer sub2.Close()
	ev, err := sub2.Next(ctx)
	if err != nil || string(ev.Payload) != `{"add":3}` {
		t.Fatalf("%+v %v", ev, err)
	}
	if n := count(t, sq, "SELECT n FROM totals"); n != 3 {
		t.Fatalf("totals %d", n)
	}
	if _, err := db.CommitOffset(ctx, "summer", "t", 1<<40); !errors.Is(err, honker.ErrStreamOffsetAhead) {
		t.Fatalf("offset ahead: %v", err)
	}
}

func TestLocksAndRateLimits(t *testing.T) {
	db, _ := openTemp(t)
	ctx := ctxT(t)
	a, err := db.TryLock(ctx, "job", "a", time.Minute)
	if err != nil || a == nil {
		t.Fatal(a, err)
	}
	b, err := db.TryLock(ctx, "job", "b", time.Minute)
	if err != nil || b != nil {
		t.Fatalf("second owner got %v %v", b, err)
	}
	if ok, _ := a.Renew(ctx, time.Minute); !ok {
		t.Fatal("renew")
	}
	if ok, _ := a.Release(ctx); !ok {
		t.Fatal("release")
	}
	b, _ = db.TryLock(ctx, "job", "b", time.Minute)
	if b == nil || b.Token <= a.Token {
		t.Fatalf("fencing token did not grow: %v then %v", a, b)
	}
	admitted := 0
	for i := 0; i < 5; i++ {
		ok, err := db.Allow(ctx, "api", 3, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		if ok {
			admitted++
		}
	}
	if admitted != 3 {
		t.Fatalf("admitted %d of 5 with limit 3", admitted)
	}
}

func TestSchedulerFiresIntoTheQueue(t *testing.T) {
	db, _ := openTemp(t)
	ctx := ctxT(t)
	if _, err := db.Schedule(ctx, "tick", "@every 100ms", "cronq", map[string]string{"k": "v"}, nil); err != nil {
		t.Fatal(err)
	}
	s := honker.NewScheduler(db)
	s.Start()
	eventually(t, "a cron job", func() bool {
		st, _ := db.Stats(ctx, "cronq")
		return st.Pending+st.Scheduled >= 2
	})
	if err := s.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	next, err := db.CronNext(ctx, "0 9 * * *", time.Date(2024, 1, 1, 10, 0, 0, 0, time.UTC), "")
	if err != nil || !next.Equal(time.Date(2024, 1, 2, 9, 0, 0, 0, time.UTC)) {
		t.Fatalf("%v %v", next, err)
	}
	list, _ := db.Schedules(ctx)
	if len(list) != 1 || list[0].Name != "tick" {
		t.Fatalf("%+v", list)
	}
}

func TestRealCancelPathWhenTheExtensionHasIt(t *testing.T) {
	db, _ := openTemp(t)
	if os.Getenv("HONKER_GO_NO_CANCEL") == "1" {
		if db.CancellableWaits() {
			t.Fatal("fallback forced but cancel path on")
		}
		return
	}
	var n int64
	err := db.SQL().QueryRow("SELECT count(*) FROM pragma_function_list WHERE name = 'honker_wait_cancel'").Scan(&n)
	if err != nil {
		t.Fatal(err)
	}
	if (n > 0) != db.CancellableWaits() {
		t.Fatalf("honker_wait_cancel present=%v but CancellableWaits=%v", n > 0, db.CancellableWaits())
	}
}

func TestTooNewSchemaIsItsOwnCodeNotExtLoad(t *testing.T) {
	db, path := openTemp(t)
	if _, err := db.SQL().Exec("UPDATE honker_meta SET value = 999 WHERE key = 'schema_version'"); err != nil {
		t.Fatal(err)
	}
	db.Close()
	_, err := honker.Open(path)
	if !errors.Is(err, honker.ErrSchemaTooNew) {
		t.Fatalf("want schema.too_new, got %v", err)
	}
}
