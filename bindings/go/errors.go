package honker

import (
	"fmt"
	"strings"
	"time"
)

// Error is an error raised by the honker extension (or refused by this package before any write),
// carrying the stable code shared by every language binding, such as "queue.lease_lost".
//
// Match a code with errors.Is against one of the sentinels (errors.Is(err, honker.ErrLeaseLost)),
// or take the code with errors.As:
//
//	var he *honker.Error
//	if errors.As(err, &he) { log.Println(he.Code) }
//
// SQLITE_BUSY is never turned into an Error: it stays the driver's sqlite3.Error.
type Error struct {
	// Code is the stable code, "area.reason".
	Code string
	// Message is the human-readable part.
	Message string
	// Err is the driver error this was parsed from, if any.
	Err error
}

func (e *Error) Error() string {
	if e.Message == "" {
		return "honker: " + e.Code
	}
	return "honker: " + e.Code + ": " + e.Message
}

// Unwrap returns the driver error this Error was parsed from.
func (e *Error) Unwrap() error { return e.Err }

// Is reports whether target is an *Error with the same code, so the sentinels below match any
// error carrying their code.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Code == e.Code && (t.Message == "" || t.Message == e.Message)
}

func sentinel(code string) *Error { return &Error{Code: code} }

// Sentinels for the stable codes; compare with errors.Is.
var (
	ErrInvalidArgument   = sentinel("arg.invalid")
	ErrUnknownOption     = sentinel("options.unknown")
	ErrPayloadNotJSON    = sentinel("payload.not_json")
	ErrPayloadTooLarge   = sentinel("payload.too_large")
	ErrLeaseLost         = sentinel("queue.lease_lost")
	ErrQueueBadName      = sentinel("queue.bad_name")
	ErrQueueBadOption    = sentinel("queue.bad_option")
	ErrQueueUnknownOpt   = sentinel("queue.unknown_option")
	ErrQueueNotFound     = sentinel("queue.not_found")
	ErrDedupConflict     = sentinel("queue.dedup_conflict")
	ErrNotifyBadChannel  = sentinel("notify.bad_channel")
	ErrStreamBadTopic    = sentinel("stream.bad_topic")
	ErrStreamBadConsumer = sentinel("stream.bad_consumer")
	ErrStreamBadKey      = sentinel("stream.bad_key")
	ErrStreamOffsetAhead = sentinel("stream.offset_ahead")
	ErrStreamTrimmed     = sentinel("stream.trimmed")
	ErrCronBadExpression = sentinel("cron.bad_expression")
	ErrCronBadName       = sentinel("cron.bad_name")
	ErrCronBadOption     = sentinel("cron.bad_option")
	ErrCronNotFound      = sentinel("cron.not_found")
	ErrCronUnknownZone   = sentinel("cron.unknown_zone")
	ErrWaitInTransaction = sentinel("wait.in_transaction")
	ErrWaitCancelled     = sentinel("wait.cancelled")
	ErrWakeReplaced      = sentinel("wake.replaced")
	ErrWakeWatcherDied   = sentinel("wake.watcher_died")
	ErrSetupInTx         = sentinel("setup.in_transaction")
	ErrSchemaTooNew      = sentinel("schema.too_new")
	ErrDBReadOnly        = sentinel("db.read_only")
	ErrDBNotFile         = sentinel("db.not_file")
	ErrDBNotHonker       = sentinel("db.not_honker")
	ErrDBFull            = sentinel("db.full")
	// ErrExtension is the code of this package's own failure to find or load the extension.
	ErrExtension = sentinel("ext.load")
	// ErrClosed is returned by a worker, listener or subscription used after it was stopped.
	ErrClosed = sentinel("binding.closed")
)

// fromDriver turns a driver error whose message reads "honker: <code>: <message>" into an *Error;
// any other error (SQLITE_BUSY included) is returned unchanged.
func fromDriver(err error) error {
	if err == nil {
		return nil
	}
	msg := err.Error()
	i := strings.Index(msg, "honker: ")
	if i < 0 {
		return err
	}
	rest := msg[i+len("honker: "):]
	j := strings.Index(rest, ": ")
	code, text := rest, ""
	if j >= 0 {
		code, text = rest[:j], rest[j+2:]
	}
	if !isCode(code) {
		return err
	}
	return &Error{Code: code, Message: text, Err: err}
}

// isCode reports whether s looks like "area.reason" (lowercase letters, digits, '_').
func isCode(s string) bool {
	dot := false
	for i, c := range s {
		switch {
		case c == '.' && i > 0 && !dot:
			dot = true
		case c >= 'a' && c <= 'z', c == '_', c >= '0' && c <= '9':
		default:
			return false
		}
	}
	return dot && !strings.HasSuffix(s, ".")
}

func errorf(code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// RetryError, returned (or wrapped) by a handler, asks for the job to be retried after Delay
// instead of after the queue's backoff.
type RetryError struct {
	Delay time.Duration
	Err   error
}

func (e *RetryError) Error() string { return fmt.Sprintf("retry in %s: %v", e.Delay, e.Err) }
func (e *RetryError) Unwrap() error { return e.Err }

// RetryIn returns an error that makes the worker retry the job after d.
func RetryIn(d time.Duration, err error) error { return &RetryError{Delay: d, Err: err} }

// DiscardError, returned (or wrapped) by a handler, sends the job to the dead letters at once,
// whatever attempts it has left.
type DiscardError struct{ Err error }

func (e *DiscardError) Error() string { return "discard: " + errString(e.Err) }
func (e *DiscardError) Unwrap() error { return e.Err }

// Discard returns an error that makes the worker dead-letter the job without retrying.
func Discard(err error) error { return &DiscardError{Err: err} }

func errString(err error) string {
	if err == nil {
		return "<nil>"
	}
	return err.Error()
}

// MapError turns an error from a query the application ran itself (SELECT honker_...) into an
// *Error when it carries a honker code; other errors come back unchanged.
func MapError(err error) error { return fromDriver(err) }
