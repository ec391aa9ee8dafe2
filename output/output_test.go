package output_test

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"io"
	"math/rand/v2"
	"os"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/fanout/fanout/internal/testwait"
	"github.com/fanout/fanout/job"
	_ "github.com/fanout/fanout/job/exec" // registers the kinds whose Results print output
	_ "github.com/fanout/fanout/job/ssh"
	"github.com/fanout/fanout/output"
)

var t0 = time.Date(2026, 11, 26, 12, 0, 0, 123456789, time.UTC)

func intp(i int) *int { return &i }

// tricky strings that JSON and CSV must carry intact.
var tricky = []string{
	"", "plain", `quote " and \ backslash`, "tab\tnew\nline\r\b\f", "\x00\x01\x1f\x7f",
	"<html> & co", "bad utf8 \xff\xfe end", "line sep \u2028 para \u2029", "emoji 🚀 é",
	"a,b;c", "x\"\"y",
}

// randomResult fills every field of a Result by reflection, so a field added
// to job.Result later is exercised here without anyone remembering to.
func randomResult(rng *rand.Rand) job.Result {
	var r job.Result
	v := reflect.ValueOf(&r).Elem()
	for i := 0; i < v.NumField(); i++ {
		f := v.Field(i)
		if rng.IntN(4) == 0 {
			continue // leave some zero: omitempty paths
		}
		switch f.Interface().(type) {
		case time.Duration:
			ds := []time.Duration{1, 499, 500, 1500, 40 * time.Microsecond, 1234567, 3 * time.Second, time.Duration(rng.Int64N(int64(time.Hour)))}
			f.Set(reflect.ValueOf(ds[rng.IntN(len(ds))]))
		case time.Time:
			f.Set(reflect.ValueOf(t0.Add(time.Duration(rng.Int64N(1e12))).In(time.FixedZone("x", 3600))))
		case *int:
			f.Set(reflect.ValueOf(intp(rng.IntN(300) - 10)))
		case []byte:
			f.Set(reflect.ValueOf([]byte(tricky[rng.IntN(len(tricky))])))
		case job.Status:
			f.Set(reflect.ValueOf([]job.Status{job.Up, job.Down, job.Error}[rng.IntN(3)]))
		case job.Class:
			f.Set(reflect.ValueOf(job.Class(tricky[rng.IntN(len(tricky))])))
		default:
			switch f.Kind() {
			case reflect.String:
				f.SetString(tricky[rng.IntN(len(tricky))])
			case reflect.Int:
				f.SetInt(rng.Int64N(100))
			case reflect.Uint64:
				f.SetUint(rng.Uint64())
			case reflect.Bool:
				f.SetBool(true)
			default:
				panic("randomResult: add a case for field " + v.Type().Field(i).Name)
			}
		}
	}
	if r.Recv > r.Sent {
		r.Recv, r.Sent = r.Sent, r.Recv
	}
	return r
}

// TestJSONLMatchesMarshalJSON: the fast JSONL path writes exactly the
// documented form that job.Result.MarshalJSON writes.
func TestJSONLMatchesMarshalJSON(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(1, 2))
	var buf bytes.Buffer
	w, err := output.New("jsonl", &buf, output.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	var want bytes.Buffer
	for i := 0; i < 5000; i++ {
		r := randomResult(rng)
		if i == 0 {
			r = job.Result{} // the all-zero Result too
		}
		b, err := r.MarshalJSON()
		if err != nil {
			t.Fatal(err)
		}
		want.Write(b)
		want.WriteByte('\n')
		if err := w.Write(r); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	got, exp := strings.Split(buf.String(), "\n"), strings.Split(want.String(), "\n")
	if len(got) != len(exp) {
		t.Fatalf("%d lines, want %d", len(got), len(exp))
	}
	for i := range got {
		if got[i] != exp[i] {
			t.Fatalf("line %d:\n got %s\nwant %s", i, got[i], exp[i])
		}
	}
	// And it reads back.
	var r job.Result
	if err := json.Unmarshal([]byte(got[1]), &r); err != nil {
		t.Fatal(err)
	}
}

func TestText(t *testing.T) {
	t.Parallel()
	tests := []struct {
		r    job.Result
		want string
	}{
		{job.Result{Host: "127.0.0.5", Job: "ping", Status: job.Up, RTT: 40 * time.Microsecond}, "127.0.0.5 is alive (0.04 ms)"},
		{job.Result{Host: "127.0.0.5", Job: "ping", Status: job.Up, RTT: 50 * time.Microsecond, RTTAvg: 41 * time.Microsecond, Sent: 3, Recv: 2}, "127.0.0.5 is alive (0.04 ms, 2/3 received)"},
		{job.Result{Host: "127.1.0.1", Job: "ping", Status: job.Down, Class: job.ClassTimeout, Error: "no reply"}, "127.1.0.1 is unreachable (timeout)"},
		{job.Result{Host: "127.1.0.1", Job: "ping", Status: job.Down, Class: job.ClassTimeout, Sent: 3}, "127.1.0.1 is unreachable (timeout, 0/3 received)"},
		{job.Result{Host: "127.0.0.1", Port: 22, Job: "tcp", Status: job.Up, RTT: 52 * time.Microsecond}, "127.0.0.1:22 is open (0.05 ms)"},
		{job.Result{Host: "::1", Port: 23, Job: "tcp", Status: job.Down, Class: job.ClassRefused}, "[::1]:23 is closed (refused)"},
		{job.Result{Host: "127.1.0.1", Port: 22, Job: "tcp", Status: job.Down, Class: job.ClassTimeout}, "127.1.0.1:22 is unreachable (timeout)"},
		{job.Result{Host: "nosuch", Port: 22, Job: "tcp", Status: job.Error, Class: job.ClassResolve, Error: "lookup nosuch: no such host"}, "nosuch:22 error (resolve: lookup nosuch: no such host)"},
		{job.Result{Host: "web1", Job: "exec", Status: job.Up, ExitCode: intp(0), Start: t0, End: t0.Add(2010 * time.Millisecond), Stdout: []byte("PING x\n\nrtt min/avg = 1/2 ms\n\n")}, "web1 ok (exit 0, 2.01 s): rtt min/avg = 1/2 ms"},
		{job.Result{Host: "web2", Job: "exec", Status: job.Down, Class: job.ClassExit, ExitCode: intp(3), Start: t0, End: t0.Add(12 * time.Millisecond), Stdout: []byte("out\n"), Stderr: []byte("bad\x1b[31m thing\n")}, `web2 failed (exit 3, 12.00 ms): bad\x1b[31m thing`},
		{job.Result{Host: "web3", Job: "exec", Status: job.Down, Class: job.ClassTimeout, Start: t0, End: t0.Add(5 * time.Second)}, "web3 failed (timeout, 5.00 s)"},
		{job.Result{Host: "web4", Job: "ssh", Status: job.Error, Class: job.ClassAuth, Error: "permission denied\nsecond line"}, `web4 error (auth: permission denied\nsecond line)`},
		{job.Result{Host: "w", Job: "exec", Status: job.Up, ExitCode: intp(0), Stdout: []byte(strings.Repeat("é", 200))}, "w ok (exit 0): " + strings.Repeat("é", 80) + "..."},
	}
	for _, tt := range tests {
		var buf bytes.Buffer
		w, _ := output.New("text", &buf, output.Filter{})
		if err := w.Write(tt.r); err != nil {
			t.Fatal(err)
		}
		w.Close()
		if got := buf.String(); got != tt.want+"\n" {
			t.Errorf("text of %+v:\n got %q\nwant %q", tt.r, got, tt.want+"\n")
		}
	}
}

func TestCSV(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(3, 4))
	var buf bytes.Buffer
	w, _ := output.New("csv", &buf, output.Filter{})
	var rs []job.Result
	for i := 0; i < 200; i++ {
		r := randomResult(rng)
		rs = append(rs, r)
		if err := w.Write(r); err != nil {
			t.Fatal(err)
		}
	}
	w.Close()
	rows, err := csv.NewReader(&buf).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(rows[0], output.CSVHeader) {
		t.Fatalf("header %v", rows[0])
	}
	col := map[string]int{}
	for i, h := range output.CSVHeader {
		col[h] = i
	}
	for i, r := range rs {
		row := rows[i+1]
		if len(row) != len(output.CSVHeader) {
			t.Fatalf("row %d has %d columns", i, len(row))
		}
		if row[col["host"]] != strings.ToValidUTF8(r.Host, "\uFFFD") && row[col["host"]] != r.Host {
			t.Errorf("row %d host %q, want %q", i, row[col["host"]], r.Host)
		}
		if want := strings.ToValidUTF8(string(r.Stdout), "\uFFFD"); row[col["stdout"]] != want {
			t.Errorf("row %d stdout %q, want %q", i, row[col["stdout"]], want)
		}
		if want := string(r.Status); row[col["status"]] != want {
			t.Errorf("row %d status %q, want %q", i, row[col["status"]], want)
		}
	}
	// An empty sweep still has its header.
	buf.Reset()
	w, _ = output.New("csv", &buf, output.Filter{})
	w.Close()
	if got := buf.String(); got != strings.Join(output.CSVHeader, ",")+"\n" {
		t.Errorf("empty csv = %q", got)
	}
	// Fixed values of a typical row.
	buf.Reset()
	w, _ = output.New("csv", &buf, output.Filter{})
	w.Write(job.Result{Index: 4, Host: "h", Addr: "127.0.0.1", Port: 22, Job: "tcp", Status: job.Up, RTT: 1234567, Attempts: 1, Start: t0, End: t0})
	w.Close()
	want := "4,h,127.0.0.1,22,tcp,up,,,1.234,,,,,,,,,,,1,2026-11-26T12:00:00.123456789Z,2026-11-26T12:00:00.123456789Z,,\n"
	if got := strings.SplitN(buf.String(), "\n", 2)[1]; got != want {
		t.Errorf("csv row\n got %q\nwant %q", got, want)
	}
}

func TestFilter(t *testing.T) {
	t.Parallel()
	rs := []job.Result{
		{Host: "a", Status: job.Up}, {Host: "b", Status: job.Down, Class: job.ClassTimeout}, {Host: "c", Status: job.Error, Class: job.ClassResolve},
	}
	tests := []struct {
		f    output.Filter
		want string
	}{
		{output.Filter{}, "abc"},
		{output.Filter{Alive: true}, "a"},
		{output.Filter{Dead: true}, "bc"},
		{output.Filter{Alive: true, Dead: true}, "abc"},
	}
	for _, format := range output.Formats {
		for _, tt := range tests {
			var buf bytes.Buffer
			w, err := output.New(format, &buf, tt.f)
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range rs {
				w.Write(r)
			}
			w.Close()
			got := ""
			for _, h := range []string{"a", "b", "c"} {
				if strings.Contains(buf.String(), `"`+h+`"`) || strings.Contains(buf.String(), "\n"+h+" ") ||
					strings.HasPrefix(buf.String(), h+" ") || strings.Contains(buf.String(), ","+h+",") {
					got += h
				}
			}
			if got != tt.want {
				t.Errorf("-o %s %+v printed %q, want %q:\n%s", format, tt.f, got, tt.want, buf.String())
			}
		}
	}
}

func TestUnknownFormat(t *testing.T) {
	t.Parallel()
	_, err := output.New("xml", io.Discard, output.Filter{})
	if err == nil || err.Error() != `output format "xml": want one of text, jsonl, csv` {
		t.Errorf("New(xml) = %v", err)
	}
}

// TestStreams: lines reach a pipe while the sweep still runs, not at Close.
func TestStreams(t *testing.T) {
	t.Parallel()
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer pr.Close()
	w, _ := output.New("text", pw, output.Filter{})
	w.Write(job.Result{Host: "first", Status: job.Up})
	// A slow sweep: the next Result comes more than flushEvery (200ms)
	// later. Time is the input here, not a wait for an event: a busy
	// machine only makes the gap longer.
	time.Sleep(250 * time.Millisecond)
	w.Write(job.Result{Host: "second", Status: job.Up})
	// A writer that kept lines until Close would leave this read waiting:
	// the deadline (minutes) turns that into a failure.
	buf := make([]byte, 1024)
	pr.SetReadDeadline(time.Now().Add(testwait.Hang))
	n, err := pr.Read(buf)
	if err != nil || !strings.Contains(string(buf[:n]), "first") {
		t.Errorf("nothing streamed before Close: %q %v", buf[:n], err)
	}
	w.Close()
	pw.Close()
}

func TestSummary(t *testing.T) {
	t.Parallel()
	s := output.NewSummary()
	for i := 0; i < 65530; i++ {
		s.Add(job.Result{Status: job.Up, RTT: time.Duration(10+i%300) * time.Microsecond})
	}
	for i := 0; i < 6; i++ {
		s.Add(job.Result{Status: job.Down, Class: job.ClassTimeout})
	}
	s.Add(job.Result{Status: job.Down, Class: job.ClassRefused})
	s.Add(job.Result{Status: job.Error, Class: job.ClassResolve})
	s.Add(job.Result{Status: job.Error, Class: job.ClassResolve})
	var buf bytes.Buffer
	if err := s.Print(&buf, 1230*time.Millisecond, false, 0); err != nil {
		t.Fatal(err)
	}
	want := "65539 targets in 1.23s: up 65530, down 7 (timeout 6, refused 1), errors 2 (resolve 2); 53284 targets/s\n" +
		"rtt min 10µs, avg 159µs, max 309µs; p50 159µs, p90 280µs, p99 306µs\n"
	if got := buf.String(); got != want {
		t.Errorf("summary\n got %q\nwant %q", got, want)
	}
	if h := s.Histogram(); !strings.HasPrefix(h, "rtt 8us ") || !strings.HasSuffix(h, " 512us") || !strings.ContainsRune(h, '█') {
		t.Errorf("histogram %q", h)
	}
	s.ForceHistogram = true
	buf.Reset()
	s.Print(&buf, time.Second, true, 12)
	if got := buf.String(); !strings.Contains(got, "\nrtt 8us") || !strings.HasSuffix(got, "interrupted: 12 targets in flight had no result\n") {
		t.Errorf("summary with histogram and interrupt:\n%s", got)
	}
	// No RTT, no rtt line.
	buf.Reset()
	e := output.NewSummary()
	e.Add(job.Result{Status: job.Up})
	e.Print(&buf, 0, false, 0)
	if got := buf.String(); got != "1 target in 0.00s: up 1, down 0, errors 0\n" {
		t.Errorf("summary %q", got)
	}
}

func TestProgress(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer pr.Close()
	var (
		mu  sync.Mutex
		got bytes.Buffer
	)
	copied := make(chan struct{})
	go func() {
		defer close(copied)
		b := make([]byte, 4096)
		for {
			n, err := pr.Read(b)
			mu.Lock()
			got.Write(b[:n])
			mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	text := func() string { mu.Lock(); defer mu.Unlock(); return got.String() }
	stop := output.StartProgress(output.NewTerminal(pw), func() output.Progress {
		return output.Progress{Done: 40, Total: 100, Up: 37, Down: 2, Errors: 1, InFlight: 9}
	})
	wants := []string{"40/100 40%", "up 37", "down 2", "err 1", "in flight 9", "targets/s", "eta"}
	// The bar is drawn on a tick: wait for a frame with everything in it,
	// not for a moment by which one was probably drawn.
	testwait.Until(testwait.Hang, func() bool {
		s := text()
		for _, want := range wants {
			if !strings.Contains(s, want) {
				return false
			}
		}
		return true
	})
	stop()
	stop() // idempotent
	pw.Close()
	<-copied
	s := text()
	for _, want := range wants {
		if !strings.Contains(s, want) {
			t.Errorf("progress bar lacks %q: %q", want, s)
		}
	}
	if !strings.HasSuffix(s, "\r\x1b[K") {
		t.Errorf("bar not cleared at stop: ends %q", s[max(0, len(s)-20):])
	}
}

// BenchmarkJSONL is the JSONL sink's throughput on typical ping results.
func BenchmarkJSONL(b *testing.B) {
	w, _ := output.New("jsonl", io.Discard, output.Filter{})
	r := job.Result{Index: 123456, Host: "10.1.2.3", Addr: "10.1.2.3", Job: "ping", Status: job.Up, RTT: 40 * time.Microsecond, Sent: 1, Recv: 1, Attempts: 1, Start: t0, End: t0.Add(time.Millisecond)}
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		r.Index = uint64(i)
		w.Write(r)
	}
	w.Close()
}

// BenchmarkMarshalJSON is the reflection path, for comparison.
func BenchmarkMarshalJSON(b *testing.B) {
	r := job.Result{Index: 123456, Host: "10.1.2.3", Addr: "10.1.2.3", Job: "ping", Status: job.Up, RTT: 40 * time.Microsecond, Sent: 1, Recv: 1, Attempts: 1, Start: t0, End: t0.Add(time.Millisecond)}
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		r.MarshalJSON()
	}
}
