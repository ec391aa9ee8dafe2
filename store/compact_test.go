package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fanout/fanout/job"
)

func TestIPv4Host(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		h  string
		v  int64
		ok bool
	}{
		{"127.0.0.1", 127<<24 | 1, true},
		{"0.0.0.0", 0, true},
		{"255.255.255.255", 1<<32 - 1, true},
		{"10.20.30.40", 10<<24 | 20<<16 | 30<<8 | 40, true},
		{"127.000.0.1", 0, false}, // not canonical: would read back as 127.0.0.1
		{"127.0.0.01", 0, false},
		{"256.0.0.1", 0, false},
		{"1.2.3", 0, false},
		{"1.2.3.4.5", 0, false},
		{"1..2.3", 0, false},
		{"1.2.3.", 0, false},
		{".1.2.3", 0, false},
		{"::1", 0, false},
		{"web01", 0, false},
		{"1.2.3.4a", 0, false},
		{"", 0, false},
		{"1234.1.1.1", 0, false},
	} {
		v, ok := parseIPv4(c.h)
		if ok != c.ok || ok && v != c.v {
			t.Errorf("parseIPv4(%q) = %d, %v; want %d, %v", c.h, v, ok, c.v, c.ok)
		}
		if ok && formatIPv4(v) != c.h {
			t.Errorf("formatIPv4(parseIPv4(%q)) = %q", c.h, formatIPv4(v))
		}
		if got := hostValue(c.h); ok && got != c.v || !ok && got != c.h {
			t.Errorf("hostValue(%q) = %v", c.h, got)
		}
	}
}

// compactResults are Results that exercise what schema 7 stores compactly:
// IPv4 hosts and addrs, statuses and classes, values equal to another
// column, and the default attempts.
func compactResults() []job.Result {
	us := time.Microsecond
	zero, one := 0, 1
	t0 := time.Unix(1700000000, 123)
	return []job.Result{
		{Host: "127.0.0.1", Addr: "127.0.0.1", Status: job.Up, RTT: 41 * us, RTTMin: 41 * us, RTTAvg: 41 * us, RTTMax: 41 * us,
			Sent: 1, Recv: 1, Attempts: 1, Start: t0, End: t0.Add(41 * us)},
		{Host: "127.0.0.2", Addr: "127.0.0.2", Status: job.Down, Class: job.ClassTimeout, Sent: 1, Attempts: 1, Start: t0, End: t0.Add(time.Second)},
		{Host: "web1", Addr: "127.0.0.3", Port: 22, Status: job.Up, RTT: 9 * us, ExitCode: &zero, Stdout: []byte("ok"), Stderr: []byte{}, Attempts: 2, Worker: "w1"},
		{Host: "web2", Addr: "", Status: job.Error, Class: job.ClassResolve, Error: "no such host", Attempts: 1},
		{Host: "127.000.0.4", Addr: "::1", Status: job.Down, Class: job.ClassExit, ExitCode: &one, Attempts: 0},
		{Host: "10.0.0.5", Addr: "10.0.0.6", Status: job.Up, RTT: 7 * us, RTTMin: 5 * us, RTTAvg: 7 * us, RTTMax: 9 * us, RTTStddev: 2 * us,
			Sent: 3, Recv: 2, Attempts: 1, Truncated: true},
		{Host: "h7", Addr: "h7", Status: "skipped", Class: "novel", Attempts: 3},
	}
}

// TestCompactRows: schema 7 keeps an IPv4 host as an integer, a value equal
// to another column as NULL, and status and class as one code (up's the
// default), binding 6 values for an up ping Result; Results and
// result_rows read every field back.
func TestCompactRows(t *testing.T) {
	t.Parallel()
	s := mustOpen(t, tmpDB(t))
	id, _ := s.CreateSweep(testSpec(), Meta{Total: 100})
	w, err := s.NewWriter(id, WriterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	want := compactResults()
	for i := range want {
		want[i].Index, want[i].Job = uint64(i), "tcp"
		w.Write(want[i])
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	checkResults(t, s, id, want)

	var hostType, minType, recvType string
	var attempts int
	if err := s.db.QueryRow(`SELECT typeof(host), typeof(rtt_min_ns), typeof(recv), attempts FROM results WHERE sweep_idx=?`,
		id<<idxBits).Scan(&hostType, &minType, &recvType, &attempts); err != nil {
		t.Fatal(err)
	}
	if hostType != "integer" || minType != "null" || recvType != "null" || attempts != 1 {
		t.Errorf("a ping Result's row: host %s, rtt_min_ns %s, recv %s, attempts %d; want integer, null, null, 1",
			hostType, minType, recvType, attempts)
	}
	// What a ping Result binds: the columns not at their default.
	var b bindOpts
	var upStatus, upClass string
	if err := s.db.QueryRow(`SELECT status, class FROM statuses WHERE code=?`, upCode).Scan(&upStatus, &upClass); err != nil ||
		upStatus != "up" || upClass != "" {
		t.Fatalf("code %d is %q/%q (%v), want up", upCode, upStatus, upClass, err)
	}
	b.codes = &codes{of: map[statusKey]int64{{job.Up, ""}: upCode}}
	b.maxOutput = 1 << 20
	var bound []string
	for _, c := range columns {
		if v := c.value(&want[0], &b); c.keep || v != c.dflt {
			bound = append(bound, c.name)
		}
	}
	if got := strings.Join(bound, " "); got != "sweep_idx host rtt_ns sent start_ns end_ns" {
		t.Errorf("a ping Result binds %s", got)
	}
}

// checkResults: sweep id holds want, through Results and through result_rows.
func checkResults(t *testing.T, s *Store, id int64, want []job.Result) {
	t.Helper()
	i := 0
	err := s.Results(context.Background(), id, Query{}, func(r job.Result) error {
		a, _ := json.Marshal(want[i])
		b, _ := json.Marshal(r)
		if string(a) != string(b) {
			t.Errorf("result %d:\n got %s\nwant %s", i, b, a)
		}
		i++
		return nil
	})
	if err != nil || i != len(want) {
		t.Fatalf("%d of %d results read back: %v", i, len(want), err)
	}
	rows, err := s.db.Query(`SELECT idx, host, addr, port, status, class, rtt_ns, sent, recv, rtt_min_ns, rtt_avg_ns, rtt_max_ns,
		attempts, start_ns, end_ns FROM result_rows WHERE sweep=? ORDER BY idx`, id)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	i = 0
	for rows.Next() {
		var (
			idx, port, rtt, sent, recv, rmin, ravg, rmax, att, st, en int64
			host, addr, status                                        string
			class                                                     sql.NullString
		)
		if err := rows.Scan(&idx, &host, &addr, &port, &status, &class, &rtt, &sent, &recv, &rmin, &ravg, &rmax, &att, &st, &en); err != nil {
			t.Fatal(err)
		}
		r := want[idx]
		wantAddr := r.Addr
		got := fmt.Sprint(host, addr, port, status, class.String, class.Valid, rtt, sent, recv, rmin, ravg, rmax, att, st, en)
		wantRow := fmt.Sprint(r.Host, wantAddr, r.Port, r.Status, r.Class, r.Class != "", int64(r.RTT), r.Sent, r.Recv,
			int64(r.RTTMin), int64(r.RTTAvg), int64(r.RTTMax), r.Attempts, unixNano(r.Start), unixNano(r.End))
		if got != wantRow {
			t.Errorf("result_rows %d:\n got %s\nwant %s", idx, got, wantRow)
		}
		i++
	}
	if i != len(want) {
		t.Errorf("result_rows has %d rows, want %d", i, len(want))
	}
}

// TestMigrateToCompact: a schema-6 file's Results (stored the old way: text
// hosts and statuses, every value spelled out) read back the same after
// the migration to schema 7, in Go and through result_rows, with their
// counts; its IPv4 hosts are integers then, as the writer's are; and the
// sweep takes more Results.
func TestMigrateToCompact(t *testing.T) {
	t.Parallel()
	path := tmpDB(t)
	old, err := open(path, openOptions{create: true, schema: 6})
	if err != nil {
		t.Fatal(err)
	}
	id, err := old.CreateSweep(testSpec(), Meta{Total: 100})
	if err != nil {
		t.Fatal(err)
	}
	want := compactResults()
	null := func(s string) any {
		if s == "" {
			return nil
		}
		return s
	}
	for i := range want {
		r := &want[i]
		r.Index, r.Job = uint64(i), "tcp"
		var addr, exit, stdout, stderr any
		if r.Addr != r.Host {
			addr = r.Addr
		}
		if r.ExitCode != nil {
			exit = *r.ExitCode
		}
		if r.Stdout != nil {
			stdout = r.Stdout
		}
		if r.Stderr != nil {
			stderr = r.Stderr
		}
		if _, err := old.db.Exec(`INSERT INTO results VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)`,
			id<<idxBits|int64(i), r.Host, addr, r.Port, string(r.Status), null(string(r.Class)), null(r.Error),
			int64(r.RTT), r.Sent, r.Recv, int64(r.RTTMin), int64(r.RTTAvg), int64(r.RTTMax), exit, stdout, stderr,
			r.Truncated, r.Attempts, unixNano(r.Start), unixNano(r.End), null(r.Worker), int64(r.RTTStddev)); err != nil {
			t.Fatal(err)
		}
		if _, err := old.db.Exec(`INSERT INTO result_counts(sweep, status, class, n) VALUES(?, ?, ?, 1)
			ON CONFLICT(sweep, status, class) DO UPDATE SET n = n + 1`, id, string(r.Status), string(r.Class)); err != nil {
			t.Fatal(err)
		}
	}
	old.Close()

	s := mustOpen(t, path)
	if v, _ := s.Schema(); v != currentVersion() {
		t.Fatalf("schema %d after migration, want %d", v, currentVersion())
	}
	checkResults(t, s, id, want)
	var hosts []string
	rows, err := s.db.Query(`SELECT typeof(host) || ' ' || typeof(COALESCE(addr, '')) FROM results ORDER BY sweep_idx`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var h string
		rows.Scan(&h)
		hosts = append(hosts, h)
	}
	rows.Close()
	if got, want := strings.Join(hosts, ", "), "integer text, integer text, text integer, text text, text text, integer integer, text text"; got != want {
		t.Errorf("host and addr types after migration:\n got %s\nwant %s", got, want)
	}
	var up string
	if s.db.QueryRow(`SELECT status||'/'||class FROM statuses WHERE code=?`, upCode).Scan(&up); up != "up/" {
		t.Errorf("code %d after migration: %q, want up/", upCode, up)
	}
	if c, _ := s.Counts(id); c.Done != uint64(len(want)) || c.Up != 3 || c.Classes["timeout"] != 1 {
		t.Errorf("counts after migration: %+v", c)
	}
	var dead int
	s.Results(context.Background(), id, Query{Status: []job.Status{job.Down}}, func(job.Result) error { dead++; return nil })
	if dead != 2 {
		t.Errorf("down Results after migration: %d, want 2", dead)
	}
	// The migrated sweep takes new Results, in the new form, beside the old.
	w, err := s.NewWriter(id, WriterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	more := compactResults()
	for i := range more {
		more[i].Index, more[i].Job = uint64(len(want)), "tcp"
		want = append(want, more[i])
		w.Write(more[i])
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	checkResults(t, s, id, want)
	// Old rows and new ones in one sweep, ordered by target as diff merges
	// them: an IPv4 host migrated as text would sort after the integers.
	var byTarget []string
	if err := s.ResultsByTarget(context.Background(), id, func(r job.Result) error {
		byTarget = append(byTarget, r.Host)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if !slices.IsSortedFunc(byTarget, CompareHosts) {
		t.Errorf("ResultsByTarget after migration: %q, not in CompareHosts order", byTarget)
	}
}

// TestStatusesReread: a reader that meets a code added after it read the
// statuses table (a sweep writing while it is read) reads the table again;
// a code that is not there at all is an error, not an empty status.
func TestStatusesReread(t *testing.T) {
	t.Parallel()
	s := mustOpen(t, tmpDB(t))
	id, _ := s.CreateSweep(testSpec(), Meta{Total: 10})
	st, err := s.statuses(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	w, err := s.NewWriter(id, WriterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	w.Write(job.Result{Index: 0, Host: "h", Status: "skipped", Class: "novel"})
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	var code int64
	if err := s.db.QueryRow(`SELECT code FROM results`).Scan(&code); err != nil {
		t.Fatal(err)
	}
	if _, ok := st.of[code]; ok {
		t.Fatalf("code %d known before it was written", code)
	}
	if k, err := st.get(code); err != nil || k.status != "skipped" || k.class != "novel" {
		t.Errorf("get(%d) = %+v, %v; want skipped/novel", code, k, err)
	}
	if _, err := st.get(999); err == nil || !strings.Contains(err.Error(), "status code 999") {
		t.Errorf("get(999): %v, want an error naming the code", err)
	}
}
