// Package honker is the Go binding of honker: durable job queues, NOTIFY/LISTEN, streams with
// per-consumer offsets, cron, locks and rate limits inside one SQLite file, with cross-process
// wake-ups and no broker.
//
// Everything is a SQL function of the honker loadable extension (libhonker_ext.so), called
// through database/sql and github.com/mattn/go-sqlite3. Every write has a ...Tx form that runs in
// the caller's *sql.Tx, so a job, notification or event commits (or rolls back) with the
// business row:
//
//	db, err := honker.Open("app.db")
//	tx, _ := db.SQL().BeginTx(ctx, nil)
//	tx.ExecContext(ctx, "INSERT INTO orders(id) VALUES (?)", 42)
//	db.EnqueueTx(ctx, tx, "emails", map[string]any{"order": 42}, nil)
//	tx.Commit()
//
// Blocking calls (workers, listeners, subscriptions, the scheduler) take a context.Context and
// return promptly when it is cancelled, through the extension's cancel mechanism.
package honker

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"

	sqlite3 "github.com/mattn/go-sqlite3"
)

// DriverName is the database/sql driver registered by this package: mattn/go-sqlite3 with the
// honker extension loaded and honker's connection settings applied on every new connection.
// Open an application pool with sql.Open(honker.DriverName, dsn) and hand it to Attach.
const DriverName = "sqlite3_honker"

// MinVersion is the oldest extension version this package works with.
const MinVersion = "0.1.0"

var (
	primeOnce    sync.Once
	primeConn    driver.Conn
	registerOnce sync.Once
	extPath      string
)

// ExtensionPath is the extension this package loads: $HONKER_EXT, else $HONKER_EXT_PATH, else
// "libhonker_ext" (.so added by SQLite) from the dynamic loader's search path.
func ExtensionPath() string {
	for _, k := range []string{"HONKER_EXT", "HONKER_EXT_PATH"} {
		if p := os.Getenv(k); p != "" {
			return p
		}
	}
	return "libhonker_ext"
}

func register() {
	registerOnce.Do(func() {
		extPath = ExtensionPath()
		sql.Register(DriverName, &sqlite3.SQLiteDriver{
			ConnectHook: connectHook,
		})
	})
}

func init() { register() }

// prime loads the extension once into an in-memory connection kept for the life of the
// process. The extension then stays mapped (it loads permanently), so a later load whose init
// fails on a file (schema.too_new) cannot leave SQLite calling into an unmapped library: today
// SQLite dlcloses an extension whose init failed, and the first such load in a process crashes
// it at the connection's close.
func prime() {
	c, err := (&sqlite3.SQLiteDriver{}).Open(":memory:")
	if err != nil {
		return
	}
	if c.(*sqlite3.SQLiteConn).LoadExtension(extPath, "sqlite3_honkerext_init") != nil {
		c.Close()
		return
	}
	primeConn = c
}

// connectHook loads the extension and applies honker's settings to a new connection:
// honker_setup() when the extension has it, else the same PRAGMAs by hand.
func connectHook(c *sqlite3.SQLiteConn) error {
	primeOnce.Do(prime)
	if err := c.LoadExtension(extPath, "sqlite3_honkerext_init"); err != nil {
		// The extension loaded but its init refused the file (schema.too_new, db.not_honker...):
		// that code, not ext.load.
		if he, ok := fromDriver(err).(*Error); ok {
			return he
		}
		return &Error{Code: ErrExtension.Code, Message: fmt.Sprintf(
			"cannot load the honker extension from %q (set HONKER_EXT to its path): %v", extPath, err), Err: err}
	}
	if _, err := c.Exec("SELECT honker_setup()", nil); err == nil {
		return nil
	} else if !strings.Contains(err.Error(), "no such function") {
		return fromDriver(err)
	}
	_, err := c.Exec(`PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;
		PRAGMA wal_autocheckpoint=10000; PRAGMA busy_timeout=5000; PRAGMA foreign_keys=ON;`, nil)
	return err
}

// DB is a honker handle over a database/sql pool whose connections have the extension loaded.
// It is safe for concurrent use.
type DB struct {
	db      *sql.DB
	owned   bool
	version string
	// canCancel: the waits take a cancel key and honker_wait_cancel exists.
	canCancel bool
	hasInfo   bool
	keyPrefix string
	keySeq    atomic.Uint64
}

// Open opens (creating if needed) the SQLite file at path with the honker extension loaded,
// WAL mode and honker's settings, and migrates honker's schema. In-memory databases are refused:
// honker's wake-ups need a file.
func Open(path string) (*DB, error) {
	if path == "" || path == ":memory:" || strings.Contains(path, "mode=memory") {
		return nil, errorf(ErrDBNotFile.Code, "honker needs a database file, not %q", path)
	}
	dsn := path
	if !strings.HasPrefix(dsn, "file:") {
		dsn = "file:" + (&url.URL{Path: path}).EscapedPath()
	}
	sep := "?"
	if strings.Contains(dsn, "?") {
		sep = "&"
	}
	// _txlock=immediate: transactions this pool begins take the write lock at BEGIN, so they
	// never upgrade a read transaction (SQLITE_BUSY_SNAPSHOT whatever the busy timeout).
	dsn += sep + "_txlock=immediate&_busy_timeout=5000"
	db, err := sql.Open(DriverName, dsn)
	if err != nil {
		return nil, err
	}
	h, err := attach(db, true)
	if err != nil {
		db.Close()
		return nil, err
	}
	return h, nil
}

// Attach wraps an application's own pool, opened with sql.Open(honker.DriverName, dsn) (or any
// mattn/go-sqlite3 driver that loads the extension), so honker calls share its connections and
// transactions. Close on the returned DB does not close the pool.
func Attach(db *sql.DB) (*DB, error) { return attach(db, false) }

func attach(db *sql.DB, owned bool) (*DB, error) {
	ctx := context.Background()
	h := &DB{db: db, owned: owned, keyPrefix: fmt.Sprintf("go-%d-%p-", os.Getpid(), db)}
	if err := db.QueryRowContext(ctx, "SELECT honker_version()").Scan(&h.version); err != nil {
		if strings.Contains(err.Error(), "no such function") {
			return nil, &Error{Code: ErrExtension.Code, Err: err, Message: fmt.Sprintf(
				"the pool's connections have no honker extension: open it with sql.Open(%q, dsn)", DriverName)}
		}
		var he *Error
		if errors.As(err, &he) {
			return nil, he
		}
		return nil, fromDriver(err)
	}
	if versionLess(h.version, MinVersion) {
		return nil, errorf(ErrExtension.Code, "extension %s at %q is older than %s", h.version, extPath, MinVersion)
	}
	rows, err := db.QueryContext(ctx, `SELECT name, narg FROM pragma_function_list
		WHERE name IN ('honker_wait_cancel', 'honker_info', 'honker_claim_wait')`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var cancelFn, claimWait6 bool
	for rows.Next() {
		var name string
		var narg int
		if err := rows.Scan(&name, &narg); err != nil {
			return nil, err
		}
		switch {
		case name == "honker_wait_cancel":
			cancelFn = true
		case name == "honker_info":
			h.hasInfo = true
		case name == "honker_claim_wait" && (narg == 6 || narg == -1):
			claimWait6 = true
		}
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	h.canCancel = cancelFn && claimWait6
	if os.Getenv("HONKER_GO_NO_CANCEL") == "1" { // tests force the bounded-wait fallback
		h.canCancel = false
	}
	return h, nil
}

// SQL returns the underlying pool, for the application's own queries and transactions.
func (h *DB) SQL() *sql.DB { return h.db }

// Version is the loaded extension's version.
func (h *DB) Version() string { return h.version }

// CancellableWaits reports whether the loaded extension stops waits through cancel keys (else
// blocking calls wait in bounded slices of 200 ms and notice a cancelled context between them).
func (h *DB) CancellableWaits() bool { return h.canCancel }

// Info returns honker_info() as JSON text, or nil when the extension predates it.
func (h *DB) Info(ctx context.Context) ([]byte, error) {
	if !h.hasInfo {
		return nil, nil
	}
	var s []byte
	err := h.db.QueryRowContext(ctx, "SELECT honker_info()").Scan(&s)
	return s, fromDriver(err)
}

// Close closes the pool if Open created it.
func (h *DB) Close() error {
	if h.owned {
		return h.db.Close()
	}
	return nil
}

func (h *DB) nextKey() string {
	return h.keyPrefix + fmt.Sprint(h.keySeq.Add(1))
}

// execer is what *sql.DB, *sql.Tx and *sql.Conn have in common.
type execer interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

func scalar[T any](ctx context.Context, q execer, query string, args ...any) (T, error) {
	var v T
	err := q.QueryRowContext(ctx, query, args...).Scan(&v)
	return v, fromDriver(err)
}

func versionLess(a, b string) bool {
	pa, pb := strings.Split(a, "."), strings.Split(b, ".")
	for i := 0; i < len(pa) && i < len(pb); i++ {
		var x, y int
		fmt.Sscan(pa[i], &x)
		fmt.Sscan(pb[i], &y)
		if x != y {
			return x < y
		}
	}
	return len(pa) < len(pb)
}

func txOrErr(tx *sql.Tx) error {
	if tx == nil {
		return errorf(ErrInvalidArgument.Code, "tx is nil")
	}
	return nil
}
