package store

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/fanout/fanout"
	"github.com/fanout/fanout/internal/testwait"
	"github.com/fanout/fanout/job"
	_ "github.com/fanout/fanout/job/tcp"
	"github.com/fanout/fanout/target"
	"github.com/fanout/fanout/watch"
	"github.com/fanout/fanout/watch/watchtest"
)

// tcpWatch is a tcp watch of 127.0.0.1-4 on port: 127.0.0.1 is up while
// ln listens, the others refuse (the listener is bound to 127.0.0.1 only).
func tcpWatch(t *testing.T, port int) (fanout.Spec, *watchtest.Driver) {
	t.Helper()
	spec := fanout.Spec{Job: "tcp", JobOptions: json.RawMessage(fmt.Sprintf(`{"ports":[%d]}`, port)),
		Targets: []string{"127.0.0.1-4"}, Concurrency: 10, Timeout: 5 * time.Second}
	set, order, j, err := spec.Build()
	if err != nil {
		t.Fatal(err)
	}
	return spec, &watchtest.Driver{Watch: "w", Set: set, Order: order, Job: j, Next: 1}
}

func listen(t *testing.T, addr string) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	return ln
}

// recorded counts OnRecorded calls and OnError calls per round.
type recorded struct {
	mu     sync.Mutex
	stored map[uint64]uint64
	errs   map[uint64][]error
}

func (r *recorded) opts(o WatchOptions) WatchOptions {
	r.stored, r.errs = map[uint64]uint64{}, map[uint64][]error{}
	o.OnRecorded = func(rd watch.Round, n uint64) {
		r.mu.Lock()
		r.stored[rd.N] = n
		r.mu.Unlock()
	}
	o.OnError = func(n uint64, err error) {
		r.mu.Lock()
		r.errs[n] = append(r.errs[n], err)
		r.mu.Unlock()
	}
	return o
}

func (r *recorded) has(n uint64) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	_, ok := r.stored[n]
	return ok
}

func round(t *testing.T, d *watchtest.Driver) watch.Round {
	t.Helper()
	var rd watch.Round
	var err error
	testwait.Returns(t, fmt.Sprintf("round %d", d.Next), func() { rd, err = d.Round(context.Background()) })
	if err != nil {
		t.Fatal(err)
	}
	return rd
}

// TestWatchRetention: --keep-rounds 3 over 10 rounds leaves exactly rounds
// 8, 9 and 10, their sweeps and their Results, nothing of the others; the
// watch reopened continues with round 11.
func TestWatchRetention(t *testing.T) {
	t.Parallel()
	ln := listen(t, "127.0.0.1:0")
	defer ln.Close()
	port := ln.Addr().(*net.TCPAddr).Port
	spec, d := tcpWatch(t, port)
	path := tmpDB(t)
	var rec recorded
	w, next, err := OpenWatch(path, spec, time.Second, rec.opts(WatchOptions{KeepRounds: 3}))
	if err != nil {
		t.Fatal(err)
	}
	if next != 1 {
		t.Fatalf("new watch: next round %d, want 1", next)
	}
	d.Next = next
	d.Observers = []watch.Observer{w}
	for i := 0; i < 10; i++ {
		round(t, d)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	for n := uint64(1); n <= 10; n++ {
		if rec.stored[n] != 4 {
			t.Errorf("round %d: %d results recorded, want 4", n, rec.stored[n])
		}
		if len(rec.errs[n]) > 0 {
			t.Errorf("round %d: %v", n, rec.errs[n])
		}
	}
	s := mustOpen(t, path)
	rs, err := s.Rounds(w.ID())
	if err != nil {
		t.Fatal(err)
	}
	var got []uint64
	for _, r := range rs {
		got = append(got, r.N)
		if r.Sweep == 0 || r.End.IsZero() || r.Targets != 4 || r.Up != 1 || r.Down != 3 {
			t.Errorf("round %+v: want a sweep, an end, 4 targets, 1 up, 3 down", r)
		}
	}
	if fmt.Sprint(got) != "[8 9 10]" {
		t.Fatalf("kept rounds %v, want [8 9 10]", got)
	}
	sws, err := s.Sweeps()
	if err != nil {
		t.Fatal(err)
	}
	var results, runs int
	s.db.QueryRow(`SELECT COUNT(*) FROM results`).Scan(&results)
	s.db.QueryRow(`SELECT COUNT(*) FROM runs`).Scan(&runs)
	if len(sws) != 3 || results != 12 || runs != 3 {
		t.Fatalf("after pruning: %d sweeps, %d results, %d runs; want 3, 12, 3", len(sws), results, runs)
	}
	for _, sw := range sws {
		if sw.State != Finished || sw.Total != 4 {
			t.Errorf("sweep %d: %s, total %d; want finished, 4", sw.ID, sw.State, sw.Total)
		}
	}
	s.Close()

	w, next, err = OpenWatch(path, spec, 2*time.Second, WatchOptions{KeepRounds: 3})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if next != 11 {
		t.Fatalf("reopened: next round %d, want 11", next)
	}
	// Another spec is another watch.
	other := spec
	other.Targets = []string{"127.0.0.1"}
	w2, next2, err := OpenWatch(path, other, time.Second, WatchOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer w2.Close()
	if next2 != 1 || w2.ID() == w.ID() {
		t.Fatalf("another spec: watch %d (first %d), next %d; want a new watch from round 1", w2.ID(), w.ID(), next2)
	}
	// One process per watch.
	if _, _, err := OpenWatch(path, spec, time.Second, WatchOptions{}); !errors.Is(err, ErrWatchRunning) {
		t.Fatalf("second recorder of a running watch: %v, want ErrWatchRunning", err)
	}
	if st, err := os.Stat(path + "-lock"); err != nil || st.Size() > 4096 {
		t.Fatalf("lock file: %v, size %d: the watches' locks are not written", err, st.Size())
	}
}

// TestWatchHistory: a host that goes down for two rounds and comes back has
// three spans, with RTTs where it was up; results of a round and diffs are
// there to read.
func TestWatchHistory(t *testing.T) {
	t.Parallel()
	ln := listen(t, "127.0.0.1:0")
	addr := ln.Addr().String()
	port := ln.Addr().(*net.TCPAddr).Port
	spec, d := tcpWatch(t, port)
	path := tmpDB(t)
	w, _, err := OpenWatch(path, spec, time.Second, WatchOptions{})
	if err != nil {
		t.Fatal(err)
	}
	d.Observers = []watch.Observer{w}
	for n := 1; n <= 7; n++ {
		switch n {
		case 3:
			ln.Close()
		case 5:
			ln = listen(t, addr)
		}
		round(t, d)
	}
	ln.Close()
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	s := mustOpen(t, path)
	spans, err := s.History(context.Background(), w.ID(), "127.0.0.1", 0)
	if err != nil {
		t.Fatal(err)
	}
	want := []struct {
		st       job.Status
		from, to uint64
	}{{job.Up, 1, 2}, {job.Down, 3, 4}, {job.Up, 5, 7}}
	if len(spans) != len(want) {
		t.Fatalf("spans %+v, want %v", spans, want)
	}
	for i, sp := range spans {
		if sp.Status != want[i].st || sp.From != want[i].from || sp.To != want[i].to || sp.Port != port {
			t.Errorf("span %d: %s rounds %d-%d port %d, want %s %d-%d port %d", i, sp.Status, sp.From, sp.To, sp.Port, want[i].st, want[i].from, want[i].to, port)
		}
		if sp.Status == job.Up && (sp.RTTMin <= 0 || sp.RTTMax < sp.RTTMin || sp.RTTAvg() < sp.RTTMin) {
			t.Errorf("span %d up: rtt min %v avg %v max %v", i, sp.RTTMin, sp.RTTAvg(), sp.RTTMax)
		}
		if sp.Status == job.Down && (sp.Class != job.ClassRefused || sp.LastErr == "") {
			t.Errorf("span %d down: class %q error %q, want refused with its message", i, sp.Class, sp.LastErr)
		}
	}
	// Always-down neighbour: one span over the seven rounds.
	if spans, _ := s.History(context.Background(), w.ID(), "127.0.0.2", 0); len(spans) != 1 || spans[0].From != 1 || spans[0].To != 7 || spans[0].Rounds != 7 {
		t.Errorf("127.0.0.2: %+v, want one down span over rounds 1-7", spans)
	}
	if spans, _ := s.History(context.Background(), w.ID(), "127.0.0.9", 0); len(spans) != 0 {
		t.Errorf("127.0.0.9 (not polled): %+v", spans)
	}
	up, err := s.Uptimes(context.Background(), w.ID(), 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(up) != 4 || up[0].Host != "127.0.0.1" || up[0].Up != 5 || up[0].Rounds != 7 || up[1].Up != 0 {
		t.Errorf("uptimes %+v, want 127.0.0.1 up 5 of 7, the others 0", up)
	}
	last, err := s.Round(w.ID(), 0)
	if err != nil || last.N != 7 {
		t.Fatalf("last round: %+v, %v", last, err)
	}
	if _, err := s.Round(w.ID(), 9); err == nil || !strings.Contains(err.Error(), "no round 9 (kept: rounds 1 to 7)") {
		t.Errorf("round 9: %v", err)
	}
	// A watch round is not what resume continues.
	if _, err := s.LastUnfinished(); !errors.Is(err, ErrNoSweep) {
		t.Errorf("LastUnfinished with only watch rounds: %v", err)
	}
	if err := s.ResumeSweep(last.Sweep, "test"); err == nil || !strings.Contains(err.Error(), "round 7 of watch") {
		t.Errorf("resume of a round: %v", err)
	}
}

// outputJob answers up with size bytes of stdout, and, from round block
// on (its Round field), holds targets from index half on until cancelled.
type outputJob struct {
	size  int
	block func(i uint64) bool
}

func (outputJob) Kind() string { return "test-output" }

func (j outputJob) Run(ctx context.Context, tg target.Target) job.Result {
	r := job.For(tg, j.Kind())
	r.Start = time.Now()
	if j.block != nil && j.block(tg.Index) {
		<-ctx.Done()
		r.Status, r.Class, r.Error = job.Error, job.ClassCanceled, "cancelled"
		return r
	}
	r.Stdout = []byte(strings.Repeat(strconv.Itoa(int(tg.Index)%10), j.size))
	r.Status, r.End, r.Attempts = job.Up, time.Now(), 1
	return r
}

func outputWatch(t *testing.T, n, size int) (fanout.Spec, *watchtest.Driver) {
	t.Helper()
	spec := fanout.Spec{Job: "test-output", Targets: []string{fmt.Sprintf("127.0.0.0-127.0.%d.%d", (n-1)/256, (n-1)%256)}}
	set, err := spec.Set(nil)
	if err != nil {
		t.Fatal(err)
	}
	if set.Len() != uint64(n) {
		t.Fatalf("set of %d, want %d", set.Len(), n)
	}
	return spec, &watchtest.Driver{Watch: "w", Set: set, Job: outputJob{size: size}, Next: 1}
}

// TestWatchFileBounded: with retention, pruned rounds' pages are reused:
// the file stops growing once it holds the kept rounds.
func TestWatchFileBounded(t *testing.T) {
	t.Parallel()
	spec, d := outputWatch(t, 200, 1000)
	path := tmpDB(t)
	var rec recorded
	w, _, err := OpenWatch(path, spec, time.Second, rec.opts(WatchOptions{KeepRounds: 3}))
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	d.Observers = []watch.Observer{w}
	size := func() int64 {
		// What the file holds once the WAL is copied into it: how far the
		// writer's checkpoints got by now is the machine's load, not the
		// file's growth.
		if _, err := w.s.db.Exec(`PRAGMA wal_checkpoint(TRUNCATE)`); err != nil {
			t.Fatal(err)
		}
		st, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		return st.Size()
	}
	var at8 int64
	for n := uint64(1); n <= 30; n++ {
		round(t, d)
		testwait.For(t, fmt.Sprintf("round %d recorded", n), func() bool { return rec.has(n) })
		if n == 8 {
			at8 = size()
		}
	}
	// Round 8's file holds the 3 kept rounds plus what is in flight.
	if at30 := size(); at30 > at8*3/2 {
		t.Fatalf("file grew from %d bytes at round 8 to %d at round 30 with 3 rounds kept", at8, at30)
	}
}

// TestWatchDiskFull: on a full disk the recorder says once per round that
// it cannot record, the rounds go on, and once there is room it records
// again, with no round number used twice.
func TestWatchDiskFull(t *testing.T) {
	dir := smallDisk(t, "1m")
	path := filepath.Join(dir, "watch.db")
	spec, d := outputWatch(t, 100, 1000)
	var rec recorded
	w, _, err := OpenWatch(path, spec, time.Second, rec.opts(WatchOptions{}))
	if err != nil {
		t.Fatal(err)
	}
	d.Observers = []watch.Observer{w}
	// Each round holds 100 KB: the disk is full within 10 rounds.
	full := uint64(0)
	for n := uint64(1); n <= 30 && full == 0; n++ {
		round(t, d)
		testwait.For(t, fmt.Sprintf("round %d recorded or refused", n), func() bool {
			rec.mu.Lock()
			defer rec.mu.Unlock()
			_, ok := rec.stored[n]
			return ok || len(rec.errs[n]) > 0
		})
		rec.mu.Lock()
		if len(rec.errs[n]) > 0 {
			full = n
		}
		rec.mu.Unlock()
	}
	if full == 0 {
		t.Fatal("30 rounds of 100 KB fit in 1m: the disk never filled")
	}
	// Two more rounds on the full disk: each is refused, once.
	for i := 0; i < 2; i++ {
		rd := round(t, d)
		testwait.For(t, fmt.Sprintf("round %d recorded or refused", rd.N), func() bool {
			rec.mu.Lock()
			defer rec.mu.Unlock()
			_, ok := rec.stored[rd.N]
			return ok || len(rec.errs[rd.N]) > 0
		})
	}
	growDisk(t, dir, "16m")
	var again uint64
	for i := 0; i < 3 && again == 0; i++ {
		rd := round(t, d)
		testwait.For(t, fmt.Sprintf("round %d recorded or refused", rd.N), func() bool {
			rec.mu.Lock()
			defer rec.mu.Unlock()
			_, ok := rec.stored[rd.N]
			return ok || len(rec.errs[rd.N]) > 0
		})
		if rec.has(rd.N) {
			again = rd.N
		}
	}
	last := d.Next - 1
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	rec.mu.Lock()
	for n, errs := range rec.errs {
		if len(errs) > 1 {
			t.Errorf("round %d: told %d times: %v", n, len(errs), errs)
		}
		if !strings.Contains(errs[0].Error(), fmt.Sprintf("cannot record round %d", n)) {
			t.Errorf("round %d: %v", n, errs[0])
		}
	}
	t.Logf("disk full from round %d; rounds refused: %d (%v); recorded again from round %d", full, len(rec.errs), rec.errs[full], again)
	rec.mu.Unlock()
	if again == 0 {
		t.Fatalf("3 rounds after the disk grew, none was recorded: %v", rec.errs)
	}
	if rec.stored[again] != 100 {
		t.Errorf("round %d: %d results stored, want 100", again, rec.stored[again])
	}
	s := mustOpen(t, path)
	var check string
	if err := s.db.QueryRow(`PRAGMA integrity_check`).Scan(&check); err != nil || check != "ok" {
		t.Fatalf("integrity_check: %q, %v", check, err)
	}
	rs, err := s.Rounds(w.ID())
	if err != nil {
		t.Fatal(err)
	}
	prev := uint64(0)
	for _, r := range rs {
		if r.N <= prev || r.N > last {
			t.Errorf("rounds %v: not increasing within 1..%d", rs, last)
		}
		prev = r.N
		if r.Sweep != 0 {
			if c, _ := s.Count(r.Sweep); r.N == again && c != 100 {
				t.Errorf("round %d: %d results in the file", r.N, c)
			}
		}
	}
	s.Close()
	w, next, err := OpenWatch(path, spec, time.Second, WatchOptions{})
	if err != nil {
		t.Fatal(err)
	}
	w.Close()
	if next <= again {
		t.Errorf("reopened: next round %d, not after %d", next, again)
	}
}

// killChildEnv names the database of TestWatchKillChild, the process that
// TestWatchKill9 kills.
const killChildEnv = "FANOUT_TEST_WATCH_KILL_CHILD"

// TestWatchKillChild is TestWatchKill9's child: a watch of 100 targets
// whose rounds 1-3 complete and whose round 4 finishes 50 targets and
// holds the other 50 until it is killed.
func TestWatchKillChild(t *testing.T) {
	path := os.Getenv(killChildEnv)
	if path == "" {
		t.Skip("run by TestWatchKill9")
	}
	spec, d := outputWatch(t, 100, 10)
	w, next, err := OpenWatch(path, spec, time.Second, WatchOptions{})
	if err != nil {
		t.Fatal(err)
	}
	d.Next = next
	d.Observers = []watch.Observer{w}
	for {
		if d.Next == 4 {
			d.Job = outputJob{size: 10, block: func(i uint64) bool { return i >= 50 }}
		}
		fmt.Printf("round %d\n", d.Next)
		d.Round(context.Background())
	}
}

// TestWatchKill9: a watch killed with SIGKILL mid-round keeps every Result
// it had committed (its finished rounds whole, the killed round's finished
// targets), and started again on the same file continues with the next
// round number; the killed round is marked interrupted.
func TestWatchKill9(t *testing.T) {
	t.Parallel()
	path := tmpDB(t)
	cmd := exec.Command(os.Args[0], "-test.run=^TestWatchKillChild$", "-test.v")
	cmd.Env = append(os.Environ(), killChildEnv+"="+path)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	lines := make(chan string, 100)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	for {
		l, ok := testwait.Recv(t, "the child's round 4", lines)
		if !ok {
			t.Fatal("the child exited before round 4")
		}
		if l == "round 4" {
			break
		}
	}
	// Wait until round 4's 50 finished targets are committed, as a reader sees it.
	var sweep4 int64
	testwait.For(t, "round 4's 50 finished results committed", func() bool {
		s, err := OpenExisting(path)
		if err != nil {
			return false
		}
		defer s.Close()
		rd, err := s.Round(1, 4)
		if err != nil {
			return false
		}
		n, err := s.Count(rd.Sweep)
		sweep4 = rd.Sweep
		return err == nil && n == 50
	})
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()

	spec, d := outputWatch(t, 100, 10)
	var rec recorded
	w, next, err := OpenWatch(path, spec, time.Second, rec.opts(WatchOptions{}))
	if err != nil {
		t.Fatal(err)
	}
	if next != 5 {
		t.Fatalf("restarted after kill -9 in round 4: next round %d, want 5", next)
	}
	d.Next, d.Observers = next, []watch.Observer{w}
	round(t, d)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	s := mustOpen(t, path)
	rs, err := s.Rounds(1)
	if err != nil {
		t.Fatal(err)
	}
	if len(rs) != 5 {
		t.Fatalf("rounds %+v, want 1 to 5", rs)
	}
	for _, r := range rs {
		n, _ := s.Count(r.Sweep)
		sw, _ := s.Sweep(r.Sweep)
		want, state := uint64(100), Finished
		if r.N == 4 {
			want, state = 50, Interrupted
		}
		if n != want || sw.State != state {
			t.Errorf("round %d: %d results, %s; want %d, %s", r.N, n, sw.State, want, state)
		}
	}
	if rs[3].Sweep != sweep4 || !rs[3].End.IsZero() {
		t.Errorf("round 4: %+v", rs[3])
	}
}

// TestWatchMigration: files of schema versions 3 and 4 (before watches)
// get the watch tables when opened, keep their sweeps, and record a watch.
func TestWatchMigration(t *testing.T) {
	t.Parallel()
	for _, v := range []int{3, 4} {
		t.Run(strconv.Itoa(v), func(t *testing.T) {
			path := tmpDB(t)
			old, err := open(path, openOptions{create: true, schema: v})
			if err != nil {
				t.Fatal(err)
			}
			id, err := old.CreateSweep(testSpec(), Meta{Total: 1})
			if err != nil {
				t.Fatal(err)
			}
			old.FinishSweep(id, Finished, "")
			if got, _ := old.Schema(); got != v {
				t.Fatalf("old schema = %d, want %d", got, v)
			}
			if ok, _ := old.hasWatches(); ok {
				t.Fatalf("schema %d has the watch tables", v)
			}
			old.Close()

			ln := listen(t, "127.0.0.1:0")
			defer ln.Close()
			spec, d := tcpWatch(t, ln.Addr().(*net.TCPAddr).Port)
			w, next, err := OpenWatch(path, spec, time.Second, WatchOptions{})
			if err != nil {
				t.Fatal(err)
			}
			d.Next, d.Observers = next, []watch.Observer{w}
			round(t, d)
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			s := mustOpen(t, path)
			if got, _ := s.Schema(); got != currentVersion() {
				t.Fatalf("schema after migration = %d, want %d", got, currentVersion())
			}
			if sw, err := s.Sweep(id); err != nil || sw.State != Finished {
				t.Fatalf("old sweep after migration: %+v, %v", sw, err)
			}
			rd, err := s.Round(w.ID(), 0)
			if err != nil || rd.N != 1 || rd.Sweep == id {
				t.Fatalf("round after migration: %+v, %v", rd, err)
			}
		})
	}
}
