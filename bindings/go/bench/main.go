// Command bench measures the Go binding's overhead over the same SQL through the same driver
// (database/sql + mattn/go-sqlite3 with the extension loaded), and the cross-process wake
// latency. Not run in CI: go run ./bench
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"time"

	honker "github.com/honker/honker/bindings/go"
)

const (
	rounds = 5
	perRun = 2000
)

type payload struct {
	Order int    `json:"order"`
	Email string `json:"email"`
}

func main() {
	if len(os.Args) > 2 && os.Args[1] == "notifier" {
		notifier(os.Args[2])
		return
	}
	dir, _ := os.MkdirTemp("", "honker-go-bench")
	defer os.RemoveAll(dir)
	db, err := honker.Open(filepath.Join(dir, "bench.db"))
	if err != nil {
		panic(err)
	}
	ctx := context.Background()
	sq := db.SQL()
	sq.SetMaxOpenConns(1) // both sides use the one connection: same driver, same statement path

	enqBinding := func(i int) {
		if _, err := db.Enqueue(ctx, "b", payload{i, "a@example.com"}, nil); err != nil {
			panic(err)
		}
	}
	enqRaw := func(i int) {
		b, _ := json.Marshal(payload{i, "a@example.com"})
		var id int64
		if err := sq.QueryRowContext(ctx, "SELECT honker_enqueue(?, ?)", "r", string(b)).Scan(&id); err != nil {
			panic(err)
		}
	}
	eb, er := paired(enqBinding, enqRaw, nil)

	type rawJob struct {
		ID         int64           `json:"id"`
		LeaseToken int64           `json:"lease_token"`
		Payload    json.RawMessage `json:"payload"`
	}
	claimBinding := func(int) {
		jobs, err := db.Claim(ctx, "b", "w", 1, 0)
		if err != nil || len(jobs) != 1 {
			panic(fmt.Sprint(jobs, err))
		}
		if err := db.Ack(ctx, jobs[0].ID, jobs[0].LeaseToken); err != nil {
			panic(err)
		}
	}
	claimRaw := func(int) {
		var s string
		if err := sq.QueryRowContext(ctx, "SELECT honker_claim(?, ?, ?, ?)", "r", "w", 1, nil).Scan(&s); err != nil {
			panic(err)
		}
		var jobs []rawJob
		if err := json.Unmarshal([]byte(s), &jobs); err != nil || len(jobs) != 1 {
			panic(fmt.Sprint(s, err))
		}
		var n int64
		if err := sq.QueryRowContext(ctx, "SELECT honker_ack(?, ?)", jobs[0].ID, jobs[0].LeaseToken).Scan(&n); err != nil {
			panic(err)
		}
	}
	refill := func() {
		for _, q := range []string{"b", "r"} {
			for i := 0; i < perRun; i++ {
				sq.Exec("SELECT honker_enqueue(?, '{\"order\":1}')", q)
			}
		}
	}
	cb, cr := paired(claimBinding, claimRaw, refill)

	p50, p99 := wake(filepath.Join(dir, "bench.db"), db)
	fmt.Println("| figure | binding (µs/op) | raw SQL (µs/op) | ratio |")
	fmt.Println("|---|---|---|---|")
	fmt.Printf("| enqueue 1/tx | %.1f | %.1f | %.2fx |\n", eb, er, eb/er)
	fmt.Printf("| claim+ack | %.1f | %.1f | %.2fx |\n", cb, cr, cb/cr)
	fmt.Printf("| cross-process wake p50 / p99 (ms) | %.3f / %.3f | | |\n", p50, p99)
}

// paired runs a and b alternately for several rounds and returns each one's median µs per op.
func paired(a, b func(int), before func()) (float64, float64) {
	var as, bs []float64
	for r := 0; r < rounds; r++ {
		if before != nil {
			before()
		}
		as = append(as, timeRun(a))
		bs = append(bs, timeRun(b))
	}
	return median(as), median(bs)
}

func timeRun(f func(int)) float64 {
	t := time.Now()
	for i := 0; i < perRun; i++ {
		f(i)
	}
	return float64(time.Since(t).Microseconds()) / perRun
}

func median(v []float64) float64 {
	sort.Float64s(v)
	return v[len(v)/2]
}

// wake measures commit-to-listener latency from a notifier process to this one.
func wake(path string, db *honker.DB) (float64, float64) {
	ctx := context.Background()
	l, err := db.Listen(ctx, "wake", honker.FromNow)
	if err != nil {
		panic(err)
	}
	defer l.Close()
	self, _ := os.Executable()
	cmd := exec.Command(self, "notifier", path)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		panic(err)
	}
	var lat []float64
	for len(lat) < 300 {
		n, err := l.Next(ctx)
		if err != nil {
			panic(err)
		}
		var sent int64
		json.Unmarshal(n.Payload, &sent)
		lat = append(lat, float64(time.Now().UnixMicro()-sent)/1e3)
	}
	cmd.Wait()
	sort.Float64s(lat)
	return lat[len(lat)/2], lat[len(lat)*99/100]
}

func notifier(path string) {
	db, err := honker.Open(path)
	if err != nil {
		panic(err)
	}
	time.Sleep(200 * time.Millisecond)
	for i := 0; i < 300; i++ {
		time.Sleep(3 * time.Millisecond)
		db.Notify(context.Background(), "wake", json.RawMessage(strconv.FormatInt(time.Now().UnixMicro(), 10)))
	}
}
