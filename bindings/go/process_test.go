package honker_test

// Crash tests: real worker processes (this test binary re-run with a role) killed with kill -9.

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"

	honker "github.com/honker/honker/bindings/go"
)

func runChildRole(role string) int {
	path := os.Getenv("HONKER_GO_TEST_DB")
	if role == "open-too-new" {
		return childTooNew(path)
	}
	db, err := honker.Open(path)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	ctx := context.Background()
	switch role {
	case "hang-worker":
		// Claim, record that the job started, then hang until killed.
		w := honker.NewWorker(db, "crash", func(ctx context.Context, j *honker.Job[map[string]int]) error {
			db.SQL().Exec("INSERT INTO started(job, pid) VALUES (?, ?)", j.ID, os.Getpid())
			select {}
		}, &honker.WorkerOptions{Lease: time.Second, Heartbeat: 200 * time.Millisecond})
		if err := w.Start(ctx); err != nil {
			return 2
		}
		select {}
	case "hang-tx":
		tx, _ := db.SQL().BeginTx(ctx, nil)
		db.EnqueueTx(ctx, tx, "crash", map[string]int{"n": 99}, nil)
		tx.ExecContext(ctx, "INSERT INTO started(job, pid) VALUES (-1, ?)", os.Getpid())
		// Another connection shows the marker only after commit, so signal through a file.
		os.WriteFile(path+".intx", []byte("1"), 0o600)
		select {}
	}
	return 3
}

func startChild(t *testing.T, path, role string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "HONKER_GO_TEST_ROLE="+role, "HONKER_GO_TEST_DB="+path)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	return cmd
}

func TestKilledWorkerProcessJobIsReclaimedAndDone(t *testing.T) {
	db, path := openTemp(t)
	ctx := ctxT(t)
	db.SQL().Exec("CREATE TABLE started(job INTEGER, pid INTEGER)")
	db.SQL().Exec("CREATE TABLE done(job INTEGER, attempts INTEGER)")
	id, err := db.Enqueue(ctx, "crash", map[string]int{"n": 1}, nil)
	if err != nil {
		t.Fatal(err)
	}
	child := startChild(t, path, "hang-worker")
	eventually(t, "the child to start the job", func() bool {
		return count(t, db.SQL(), "SELECT count(*) FROM started WHERE job = ?", id) == 1
	})
	if err := child.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	child.Wait()
	// Our own worker gets the job once the dead child's lease expires.
	w := honker.NewWorker(db, "crash", func(ctx context.Context, j *honker.Job[map[string]int]) error {
		_, err := db.SQL().ExecContext(ctx, "INSERT INTO done VALUES (?, ?)", j.ID, j.Attempts)
		return err
	}, &honker.WorkerOptions{Lease: 5 * time.Second})
	if err := w.Start(ctx); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the reclaimed job to be done", func() bool {
		return count(t, db.SQL(), "SELECT count(*) FROM done WHERE job = ?", id) == 1
	})
	if err := w.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if a := count(t, db.SQL(), "SELECT attempts FROM done WHERE job = ?", id); a != 2 {
		t.Fatalf("attempts %d, want 2 (the killed one and ours)", a)
	}
	if n := count(t, db.SQL(), "SELECT count(*) FROM honker_jobs"); n != 0 {
		t.Fatalf("%d live jobs left", n)
	}
	integrityOK(t, db.SQL())
}

func TestProcessKilledMidTransactionLeavesNoJob(t *testing.T) {
	db, path := openTemp(t)
	db.SQL().Exec("CREATE TABLE started(job INTEGER, pid INTEGER)")
	child := startChild(t, path, "hang-tx")
	eventually(t, "the child inside its transaction", func() bool {
		_, err := os.Stat(path + ".intx")
		return err == nil
	})
	child.Process.Signal(syscall.SIGKILL)
	child.Wait()
	if n := count(t, db.SQL(), "SELECT count(*) FROM honker_jobs"); n != 0 {
		t.Fatalf("a job of a killed transaction is visible: %d", n)
	}
	if n := count(t, db.SQL(), "SELECT count(*) FROM started"); n != 0 {
		t.Fatalf("the killed transaction's row is visible: %d", n)
	}
	// The file stays writable.
	if _, err := db.Enqueue(ctxT(t), "crash", 1, nil); err != nil {
		t.Fatal(err)
	}
	integrityOK(t, db.SQL())
}

// childTooNew opens a too-new file as the first load of the extension in a fresh process (whose
// failed init once crashed the process at close), twice, and exits 0 if both say schema.too_new.
func childTooNew(path string) int {
	for i := 0; i < 2; i++ {
		if _, err := honker.Open(path); !errors.Is(err, honker.ErrSchemaTooNew) {
			fmt.Fprintln(os.Stderr, "want schema.too_new, got", err)
			return 4
		}
	}
	return 0
}

func TestFreshProcessOpeningATooNewFileGetsTheCodeAndSurvives(t *testing.T) {
	db, path := openTemp(t)
	db.SQL().Exec("UPDATE honker_meta SET value = value + 1 WHERE key = 'schema_version'")
	db.Close()
	cmd := startChild(t, path, "open-too-new")
	if err := cmd.Wait(); err != nil {
		t.Fatalf("child: %v", err)
	}
}
