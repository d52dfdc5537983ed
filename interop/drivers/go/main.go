// Command driver plays one interop actor (see interop/README.md) through the Go binding.
package main

import (
	"bufio"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"

	honker "github.com/honker/honker/bindings/go"
	sqlite3 "github.com/mattn/go-sqlite3"
)

type request struct {
	ID   json.RawMessage            `json:"id"`
	Op   string                     `json:"op"`
	Args map[string]json.RawMessage `json:"args"`
}

type failure struct {
	code, msg string
}

func (f *failure) Error() string { return f.code + ": " + f.msg }

type actor struct {
	path string
	db   *honker.DB
	tx   *sql.Tx
}

func main() {
	a := &actor{path: os.Args[1]}
	in := bufio.NewReaderSize(os.Stdin, 1<<20)
	out := bufio.NewWriter(os.Stdout)
	for {
		line, err := in.ReadBytes('\n')
		if len(line) > 0 {
			var req request
			var resp []byte
			if jerr := json.Unmarshal(line, &req); jerr != nil {
				resp = answer(nil, nil, &failure{"driver.bad_args", jerr.Error()})
			} else {
				v, err := a.do(req)
				resp = answer(req.ID, v, err)
			}
			out.Write(resp)
			out.WriteByte('\n')
			out.Flush()
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
	}
	if a.db != nil {
		a.db.Close()
	}
}

func answer(id json.RawMessage, v json.RawMessage, err error) []byte {
	if id == nil {
		id = json.RawMessage("null")
	}
	if err == nil {
		if v == nil {
			v = json.RawMessage("null")
		}
		return []byte(fmt.Sprintf(`{"id":%s,"ok":true,"value":%s}`, id, v))
	}
	code, msg := "driver.failed", err.Error()
	var he *honker.Error
	var se sqlite3.Error
	var f *failure
	switch {
	case errors.As(err, &f):
		code, msg = f.code, f.msg
	case errors.As(err, &he):
		code, msg = he.Code, he.Message
	case errors.As(err, &se):
		code = "sqlite.error"
		if se.Code == sqlite3.ErrBusy || se.Code == sqlite3.ErrLocked {
			code = "sqlite.busy"
		}
	}
	e, _ := json.Marshal(map[string]string{"code": code, "message": msg})
	return []byte(fmt.Sprintf(`{"id":%s,"ok":false,"error":%s}`, id, e))
}

// q is the open transaction, else the pool (one connection).
func (a *actor) q() interface {
	QueryRowContext(context.Context, string, ...any) *sql.Row
	QueryContext(context.Context, string, ...any) (*sql.Rows, error)
	ExecContext(context.Context, string, ...any) (sql.Result, error)
} {
	if a.tx != nil {
		return a.tx
	}
	return a.db.SQL()
}

// SQL function per op, its argument names (payload-like ones pass as JSON text), and whether
// its TEXT answer is JSON to splice verbatim.
var ops = map[string]struct {
	fn   string
	args []string
	json bool
}{
	"queue_configure": {"honker_queue_configure", []string{"queue", "options"}, true},
	"claim":           {"honker_claim", []string{"queue", "worker", "n", "lease_ms?"}, true},
	"ack":             {"honker_ack", []string{"job_id", "lease_token"}, false},
	"retry":           {"honker_retry", []string{"job_id", "lease_token", "delay_ms?", "error?"}, true},
	"fail":            {"honker_fail", []string{"job_id", "lease_token", "error"}, false},
	"job":             {"honker_job", []string{"job_id"}, true},
	"dead_requeue":    {"honker_dead_requeue", []string{"job_id"}, false},
	"result_save":     {"honker_result_save", []string{"job_id", "value", "ttl_ms?"}, false},
	"result_get":      {"honker_result_get", []string{"job_id"}, true},
	"listen":          {"honker_listen", []string{"channel", "after_id", "limit"}, true},
	"listen_wait":     {"honker_listen_wait", []string{"channel", "after_id", "limit", "timeout_ms"}, true},
	"read":            {"honker_read", []string{"topic", "after_offset", "limit"}, true},
	"commit_offset":   {"honker_commit_offset", []string{"consumer", "topic", "offset"}, false},
	"offset":          {"honker_offset", []string{"consumer", "topic"}, false},
	"schedule":        {"honker_schedule", []string{"name", "cron", "queue", "payload", "options?"}, false},
	"cron_next":       {"honker_cron_next", []string{"cron", "after_ms", "tz?"}, false},
	"cron_tick":       {"honker_cron_tick", []string{"now_ms"}, true},
}

func (a *actor) do(r request) (json.RawMessage, error) {
	ctx := context.Background()
	if r.Op == "close" {
		if a.db != nil {
			a.db.Close()
			a.db, a.tx = nil, nil
		}
		return nil, nil
	}
	if a.db == nil {
		db, err := honker.Open(a.path)
		if err != nil {
			return nil, err
		}
		db.SQL().SetMaxOpenConns(1) // one connection for the life of the actor
		a.db = db
	}
	switch r.Op {
	case "open":
		return nil, nil
	case "begin":
		if a.tx != nil {
			return nil, &failure{"sqlite.error", "cannot start a transaction within a transaction"}
		}
		tx, err := a.db.SQL().BeginTx(ctx, nil) // the pool's _txlock=immediate: BEGIN IMMEDIATE
		a.tx = tx
		return nil, err
	case "commit", "rollback":
		if a.tx == nil {
			return nil, &failure{"sqlite.error", "no transaction is active"}
		}
		var err error
		if r.Op == "commit" {
			err = a.tx.Commit()
		} else {
			err = a.tx.Rollback()
		}
		a.tx = nil
		return nil, err
	case "sql":
		return a.sql(ctx, str(r.Args["sql"]))
	case "enqueue", "notify", "publish":
		return a.write(ctx, r)
	}
	op, ok := ops[r.Op]
	if !ok {
		return nil, &failure{"driver.unsupported_op", r.Op}
	}
	var args []any
	for _, name := range op.args {
		optional := name[len(name)-1] == '?'
		if optional {
			name = name[:len(name)-1]
		}
		raw, present := r.Args[name]
		if !present && optional {
			args = append(args, nil)
			continue
		}
		args = append(args, plain(name, raw))
	}
	for len(args) > 0 && args[len(args)-1] == nil && len(args) > 1 && op.args[len(args)-1][len(op.args[len(args)-1])-1] == '?' {
		args = args[:len(args)-1]
	}
	ph := "?"
	for i := 1; i < len(args); i++ {
		ph += ", ?"
	}
	var v any
	if err := a.q().QueryRowContext(ctx, "SELECT "+op.fn+"("+ph+")", args...).Scan(&v); err != nil {
		return nil, honker.MapError(err)
	}
	return toJSON(v, op.json), nil
}

// write goes through the binding's typed API; payloads pass as JSON text unchanged.
func (a *actor) write(ctx context.Context, r request) (json.RawMessage, error) {
	payload := json.RawMessage(str(r.Args["payload"]))
	var id int64
	var err error
	switch r.Op {
	case "enqueue":
		if o, ok := r.Args["options"]; ok && string(o) != "null" {
			// Options go to SQL as given, so unknown keys reach the extension's check.
			var v any
			err = a.q().QueryRowContext(ctx, "SELECT honker_enqueue(?, ?, ?)", str(r.Args["queue"]), string(payload), string(o)).Scan(&v)
			if err != nil {
				return nil, honker.MapError(err)
			}
			return toJSON(v, false), nil
		}
		if a.tx != nil {
			id, err = a.db.EnqueueTx(ctx, a.tx, str(r.Args["queue"]), payload, nil)
		} else {
			id, err = a.db.Enqueue(ctx, str(r.Args["queue"]), payload, nil)
		}
	case "notify":
		if a.tx != nil {
			id, err = a.db.NotifyTx(ctx, a.tx, str(r.Args["channel"]), payload)
		} else {
			id, err = a.db.Notify(ctx, str(r.Args["channel"]), payload)
		}
	case "publish":
		key := ""
		if k, ok := r.Args["key"]; ok && string(k) != "null" {
			key = str(k)
		}
		if a.tx != nil {
			id, err = a.db.PublishTx(ctx, a.tx, str(r.Args["topic"]), key, payload)
		} else {
			id, err = a.db.Publish(ctx, str(r.Args["topic"]), key, payload)
		}
	}
	if err != nil {
		return nil, err
	}
	return json.RawMessage(fmt.Sprint(id)), nil
}

func (a *actor) sql(ctx context.Context, q string) (json.RawMessage, error) {
	rows, err := a.q().QueryContext(ctx, q)
	if err != nil {
		return nil, honker.MapError(err)
	}
	defer rows.Close()
	cols, _ := rows.Columns()
	out := []map[string]any{}
	for rows.Next() {
		vals := make([]any, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			return nil, honker.MapError(err)
		}
		m := map[string]any{}
		for i, c := range cols {
			if b, ok := vals[i].([]byte); ok {
				vals[i] = string(b)
			}
			m[c] = vals[i]
		}
		out = append(out, m)
	}
	if err := rows.Err(); err != nil {
		return nil, honker.MapError(err)
	}
	b, err := json.Marshal(out)
	return b, err
}

// plain turns a request argument into a bind value: JSON-text args (payload, value) and
// objects (options) as text, numbers as int64, strings as strings, null as NULL.
func plain(name string, raw json.RawMessage) any {
	if raw == nil || string(raw) == "null" {
		return nil
	}
	switch raw[0] {
	case '"':
		return str(raw)
	case '{', '[':
		return string(raw)
	case 't':
		return 1
	case 'f':
		return 0
	}
	var n json.Number
	if json.Unmarshal(raw, &n) == nil {
		if i, err := n.Int64(); err == nil {
			return i
		}
		f, _ := n.Float64()
		return f
	}
	return string(raw)
}

func str(raw json.RawMessage) string {
	var s string
	if json.Unmarshal(raw, &s) != nil {
		return string(raw)
	}
	return s
}

func toJSON(v any, isJSON bool) json.RawMessage {
	switch x := v.(type) {
	case nil:
		return json.RawMessage("null")
	case int64:
		return json.RawMessage(fmt.Sprint(x))
	case float64:
		b, _ := json.Marshal(x)
		return b
	case []byte:
		if isJSON {
			return json.RawMessage(x)
		}
		b, _ := json.Marshal(string(x))
		return b
	case string:
		if isJSON {
			return json.RawMessage(x)
		}
		b, _ := json.Marshal(x)
		return b
	}
	b, _ := json.Marshal(v)
	return b
}
