package output_test

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/fanout/fanout/job"
	"github.com/fanout/fanout/output"
	"github.com/fanout/fanout/watch"
)

// watchFeed sends one round with a down change and an up result.
func watchFeed(w watch.Observer) {
	down := job.Result{Index: 1, Host: "127.0.0.5", Addr: "127.0.0.5", Job: "ping", Status: job.Down, Class: job.ClassTimeout,
		Error: "no reply", Sent: 1, Attempts: 1, Start: t0, End: t0.Add(90 * time.Second)}
	up := job.Result{Index: 0, Host: "127.0.0.4", Job: "ping", Status: job.Up, RTT: 40 * time.Microsecond, Attempts: 1, Start: t0, End: t0}
	w.RoundStart(watch.Round{Watch: "w1", N: 3})
	w.Result(3, up)
	w.Result(3, down)
	w.Change(watch.Change{ID: "w1/3/127.0.0.5", Watch: "w1", Round: 3, Kind: watch.Down, Result: down,
		PrevStatus: job.Up, Since: t0})
	w.RoundEnd(watch.Round{Watch: "w1", N: 3})
}

// A change in jsonl is the Result's own record (a sweep's jq filters keep
// working) plus watch, round, change, id, prev_status and since; --all adds
// every result with its round; --dead prints the round's down set only.
func TestWatchJSONL(t *testing.T) {
	var buf bytes.Buffer
	w, err := output.NewWatch("jsonl", &buf, output.WatchMode{})
	if err != nil {
		t.Fatal(err)
	}
	watchFeed(w)
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 1 {
		t.Fatalf("%d lines, want the change only:\n%s", len(lines), buf.String())
	}
	var r job.Result
	if err := json.Unmarshal([]byte(lines[0]), &r); err != nil || r.Host != "127.0.0.5" || r.Status != job.Down || r.Class != job.ClassTimeout {
		t.Fatalf("not a Result record: %v %+v", err, r)
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &m); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"watch": "w1", "round": 3.0, "change": "down", "id": "w1/3/127.0.0.5", "prev_status": "up",
		"since": t0.Format(time.RFC3339Nano)}
	for k, v := range want {
		if m[k] != v {
			t.Errorf("%s = %v, want %v in %s", k, m[k], v, lines[0])
		}
	}
	if _, ok := m["prev_class"]; ok {
		t.Errorf("prev_class present though empty: %s", lines[0])
	}

	buf.Reset()
	w, _ = output.NewWatch("jsonl", &buf, output.WatchMode{All: true})
	watchFeed(w)
	lines = strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 3 || !strings.HasSuffix(lines[0], `,"watch":"w1","round":3}`) || !strings.Contains(lines[2], `"change":"down"`) {
		t.Fatalf("--all:\n%s", buf.String())
	}

	buf.Reset()
	w, _ = output.NewWatch("jsonl", &buf, output.WatchMode{Set: output.Filter{Dead: true}})
	watchFeed(w)
	lines = strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 1 || strings.Contains(lines[0], "change") || !strings.Contains(lines[0], `"host":"127.0.0.5"`) {
		t.Fatalf("--dead:\n%s", buf.String())
	}
}

func TestWatchTextAndCSV(t *testing.T) {
	var buf bytes.Buffer
	w, _ := output.NewWatch("text", &buf, output.WatchMode{All: true})
	watchFeed(w)
	want := "round 3: 127.0.0.4 is alive (0.04 ms)\n" +
		"round 3: 127.0.0.5 is unreachable (timeout, 0/1 received)\n" +
		"round 3 down: 127.0.0.5 is unreachable (timeout, 0/1 received), was up for 1m30s\n"
	if buf.String() != want {
		t.Fatalf("text:\n%s\nwant:\n%s", buf.String(), want)
	}

	buf.Reset()
	w, _ = output.NewWatch("csv", &buf, output.WatchMode{})
	watchFeed(w)
	rows, err := csv.NewReader(&buf).ReadAll()
	if err != nil || len(rows) != 2 || len(rows[0]) != len(output.WatchCSVHeader) || len(rows[1]) != len(rows[0]) {
		t.Fatalf("csv %v %q", err, rows)
	}
	n := len(output.CSVHeader)
	if got := strings.Join(rows[1][n:], ","); got != "w1,3,down,w1/3/127.0.0.5,up,,"+t0.Format(time.RFC3339Nano) {
		t.Fatalf("csv watch columns %q", got)
	}
}

func TestRoundLine(t *testing.T) {
	r := watch.Round{N: 4, Targets: 10, Up: 9, Down: 1, Changes: 1, Due: t0, Start: t0.Add(500 * time.Millisecond),
		End: t0.Add(2 * time.Second), Late: true}
	if got, want := output.RoundLine(r), "round 4: 10 targets, 9 up, 1 down, 0 errors, 1 changes in 1.50s, late by 0.50s"; got != want {
		t.Fatalf("%q, want %q", got, want)
	}
}

// A Result the WatchWriter does not print (the default: changes only)
// costs no allocation: a watch's every target-round goes through Result,
// and a copy on the heap each time was most of a /16 watch's garbage.
func TestWatchResultNotPrintedAllocatesNothing(t *testing.T) {
	var buf bytes.Buffer
	w, err := output.NewWatch("jsonl", &buf, output.WatchMode{})
	if err != nil {
		t.Fatal(err)
	}
	r := job.Result{Index: 1, Host: "127.0.0.5", Job: "ping", Status: job.Up, Attempts: 1, Start: t0, End: t0}
	if n := testing.AllocsPerRun(100, func() { w.Result(3, r) }); n != 0 {
		t.Errorf("Result allocates %.1f times per call, want 0", n)
	}
	if buf.Len() != 0 {
		t.Errorf("printed %q", buf.String())
	}
}
