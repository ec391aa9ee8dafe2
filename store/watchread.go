package store

// Reading a watch's history back: the watches and rounds a file keeps, a
// host's timeline, uptimes.

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"github.com/fanout/fanout/job"
	"github.com/fanout/fanout/spec"
)

// Watch is a watch kept in a store.
type Watch struct {
	ID      int64
	Spec    spec.Spec
	Every   time.Duration
	Created time.Time
	Rounds  int    // rounds kept
	First   uint64 // first and last kept round (0 when none)
	Last    uint64
}

// RoundInfo is one kept round of a watch.
type RoundInfo struct {
	Watch           int64
	N               uint64
	Sweep           int64 // 0: not recorded (the disk was full)
	Due, Start, End time.Time
	Late            bool
	Targets         int
	Up, Down, Error int
	Changes         int
}

// Watches lists the watches kept in the file, oldest first.
func (s *Store) Watches() ([]Watch, error) {
	rows, err := s.db.Query(`SELECT w.id, w.spec, w.every_ns, w.created_ns,
		(SELECT COUNT(*) FROM rounds r WHERE r.watch=w.id),
		COALESCE((SELECT MIN(round) FROM rounds r WHERE r.watch=w.id), 0),
		COALESCE((SELECT MAX(round) FROM rounds r WHERE r.watch=w.id), 0)
		FROM watches w ORDER BY w.id`)
	if err != nil {
		return nil, s.describe("read watches from", err)
	}
	defer rows.Close()
	var out []Watch
	for rows.Next() {
		var (
			w              Watch
			spec           string
			every, created int64
			first, last    int64
		)
		if err := rows.Scan(&w.ID, &spec, &every, &created, &w.Rounds, &first, &last); err != nil {
			return nil, s.describe("read watches from", err)
		}
		if err := json.Unmarshal([]byte(spec), &w.Spec); err != nil {
			return nil, fmt.Errorf("watch %d in %s: stored spec: %w", w.ID, s.path, err)
		}
		w.Every, w.Created = time.Duration(every), time.Unix(0, created)
		w.First, w.Last = uint64(first), uint64(last)
		out = append(out, w)
	}
	return out, rows.Err()
}

// PickWatch is watch id, or with id 0 the file's only watch.
func (s *Store) PickWatch(id int64) (Watch, error) {
	ws, err := s.Watches()
	if err != nil {
		return Watch{}, err
	}
	if len(ws) == 0 {
		return Watch{}, fmt.Errorf("%s: no watch in it (a watch records with fanout watch --db)", s.path)
	}
	if id == 0 {
		if len(ws) > 1 {
			return Watch{}, fmt.Errorf("%s holds %d watches (%s): say which with --watch", s.path, len(ws), watchIDs(ws))
		}
		return ws[0], nil
	}
	for _, w := range ws {
		if w.ID == id {
			return w, nil
		}
	}
	return Watch{}, fmt.Errorf("watch %d in %s: no such watch (known: %s)", id, s.path, watchIDs(ws))
}

func watchIDs(ws []Watch) string {
	ids := make([]int64, len(ws))
	for i, w := range ws {
		ids[i] = w.ID
	}
	return joinIDs(ids)
}

// Rounds lists watch w's kept rounds, oldest first.
func (s *Store) Rounds(w int64) ([]RoundInfo, error) {
	return s.rounds(`WHERE watch=? ORDER BY round`, w)
}

// Round is round n of watch w; n 0 is its last round with a sweep.
func (s *Store) Round(w int64, n uint64) (RoundInfo, error) {
	var rs []RoundInfo
	var err error
	if n == 0 {
		rs, err = s.rounds(`WHERE watch=? AND sweep IS NOT NULL ORDER BY round DESC LIMIT 1`, w)
	} else {
		rs, err = s.rounds(`WHERE watch=? AND round=?`, w, int64(n))
	}
	if err != nil {
		return RoundInfo{}, err
	}
	if len(rs) == 0 || rs[0].Sweep == 0 {
		var first, last int64
		s.db.QueryRow(`SELECT COALESCE(MIN(round),0), COALESCE(MAX(round),0) FROM rounds WHERE watch=?`, w).Scan(&first, &last)
		kept := "it has no round kept"
		if last > 0 {
			kept = fmt.Sprintf("kept: rounds %d to %d", first, last)
		}
		if n == 0 {
			return RoundInfo{}, fmt.Errorf("watch %d in %s: no recorded round (%s)", w, s.path, kept)
		}
		if len(rs) > 0 {
			return RoundInfo{}, fmt.Errorf("watch %d in %s: round %d was not recorded (the store could not hold it then)", w, s.path, n)
		}
		return RoundInfo{}, fmt.Errorf("watch %d in %s: no round %d (%s)", w, s.path, n, kept)
	}
	return rs[0], nil
}

// RoundOf is the watch round that sweep id is, if it is one.
func (s *Store) RoundOf(id int64) (RoundInfo, bool, error) {
	rs, err := s.rounds(`WHERE sweep=?`, id)
	if err != nil || len(rs) == 0 {
		return RoundInfo{}, false, err
	}
	return rs[0], true, nil
}

func (s *Store) rounds(where string, args ...any) ([]RoundInfo, error) {
	if ok, err := s.hasWatches(); err != nil || !ok {
		return nil, err
	}
	rows, err := s.db.Query(`SELECT watch, round, COALESCE(sweep, 0), due_ns, start_ns, COALESCE(end_ns, 0), late,
		targets, up, down, error, changes FROM rounds `+where, args...)
	if err != nil {
		return nil, s.describe("read rounds from", err)
	}
	defer rows.Close()
	var out []RoundInfo
	for rows.Next() {
		var (
			ri              RoundInfo
			n               int64
			due, start, end int64
			late            int
		)
		if err := rows.Scan(&ri.Watch, &n, &ri.Sweep, &due, &start, &end, &late, &ri.Targets, &ri.Up, &ri.Down, &ri.Error, &ri.Changes); err != nil {
			return nil, s.describe("read rounds from", err)
		}
		ri.N, ri.Late = uint64(n), late != 0
		ri.Due, ri.Start = timeOrZero(due), timeOrZero(start)
		ri.End = timeOrZero(end)
		out = append(out, ri)
	}
	return out, rows.Err()
}

// hasWatches: the file has the watch tables (a read-only file of an older
// schema is read as it is, without them).
func (s *Store) hasWatches() (bool, error) {
	var n int
	if err := s.db.QueryRow(`SELECT COUNT(*) FROM sqlite_schema WHERE type='table' AND name='rounds'`).Scan(&n); err != nil {
		return false, s.describe("read rounds from", err)
	}
	return n > 0, nil
}

func timeOrZero(ns int64) time.Time {
	if ns == 0 {
		return time.Time{}
	}
	return time.Unix(0, ns)
}

// Span is a stretch of rounds over which a target held one state.
type Span struct {
	Host           string
	Port           int
	Status         job.Status
	Class          job.Class
	From, To       uint64    // first and last round of the stretch
	Start, End     time.Time // first result's start, last result's end
	Rounds         int       // rounds with a result for the target
	RTTMin, RTTMax time.Duration
	LastErr        string // the last error message of the stretch
	rttSum         time.Duration
	rttN           int
}

// RTTAvg is the mean RTT of the stretch's up results.
func (sp Span) RTTAvg() time.Duration {
	if sp.rttN == 0 {
		return 0
	}
	return sp.rttSum / time.Duration(sp.rttN)
}

// History is host's timeline in watch w: its kept rounds' results folded
// into spans of one state (status and class), oldest first. A host is
// matched by name (the target as given) or address; port 0 matches every
// port (each port has its own spans). Each round is looked up at the
// indexes the host had in the round before (a B-tree probe each), and
// scanned only when the target list changed.
func (s *Store) History(ctx context.Context, w int64, host string, port int) ([]Span, error) {
	rounds, err := s.Rounds(w)
	if err != nil {
		return nil, err
	}
	type key struct {
		host string
		port int
	}
	var spans []Span
	open := map[key]int{} // target -> its current span in spans
	add := func(n uint64, r *job.Result) {
		k := key{r.Host, r.Port}
		i, ok := open[k]
		if !ok || spans[i].Status != r.Status || spans[i].Class != r.Class {
			spans = append(spans, Span{Host: r.Host, Port: r.Port, Status: r.Status, Class: r.Class, From: n, Start: r.Start})
			i = len(spans) - 1
			open[k] = i
		}
		sp := &spans[i]
		sp.To, sp.End = n, r.End
		sp.Rounds++
		if r.Error != "" {
			sp.LastErr = r.Error
		}
		if r.Status == job.Up && r.RTT > 0 {
			if sp.rttN == 0 || r.RTT < sp.RTTMin {
				sp.RTTMin = r.RTT
			}
			sp.RTTMax = max(sp.RTTMax, r.RTT)
			sp.rttSum += r.RTT
			sp.rttN++
		}
	}
	match := func(r *job.Result) bool {
		return (r.Host == host || r.Addr == host) && (port == 0 || r.Port == port)
	}
	var idx []uint64 // the host's indexes in the last round
	for _, rd := range rounds {
		if rd.Sweep == 0 {
			continue
		}
		sw, err := s.Sweep(rd.Sweep)
		if err != nil {
			return nil, err
		}
		var got []job.Result
		for _, i := range idx {
			err := s.scan(ctx, sw.Spec.Job, `SELECT `+resultCols+` FROM results WHERE sweep_idx=?`,
				[]any{rd.Sweep<<idxBits | int64(i)}, func(r job.Result) error {
					if match(&r) {
						got = append(got, r)
					}
					return nil
				})
			if err != nil {
				return nil, err
			}
		}
		if len(idx) == 0 || len(got) != len(idx) {
			// First round, or the host moved: look it up in the whole round.
			got, idx = got[:0], idx[:0]
			err = s.scan(ctx, sw.Spec.Job, `SELECT `+resultCols+` FROM results WHERE `+inSweep(rd.Sweep)+
				` AND (host IN (?, ?) OR addr IN (?, ?)) ORDER BY sweep_idx`, []any{host, hostValue(host), host, hostValue(host)}, func(r job.Result) error {
				if match(&r) {
					got = append(got, r)
					idx = append(idx, r.Index)
				}
				return nil
			})
			if err != nil {
				return nil, err
			}
		}
		for i := range got {
			add(rd.N, &got[i])
		}
	}
	return spans, nil
}

// Uptime is a target's share of up results over a watch's kept rounds.
type Uptime struct {
	Host   string
	Port   int
	Up     int
	Rounds int // rounds with a result for the target
}

// Uptimes counts, over watch w's last maxRounds kept rounds (0: all), each
// target's up results; targets are told apart by host and port. It holds
// one small record per target.
func (s *Store) Uptimes(ctx context.Context, w int64, maxRounds int) ([]Uptime, error) {
	rounds, err := s.Rounds(w)
	if err != nil {
		return nil, err
	}
	if maxRounds > 0 && len(rounds) > maxRounds {
		rounds = rounds[len(rounds)-maxRounds:]
	}
	type key struct {
		host string
		port int
	}
	at := map[key]int{}
	var out []Uptime
	for _, rd := range rounds {
		if rd.Sweep == 0 {
			continue
		}
		rows, err := s.db.QueryContext(ctx, `SELECT host, port, code IN `+upCodes+` FROM results WHERE `+inSweep(rd.Sweep))
		if err != nil {
			return nil, s.describe("read results from", err)
		}
		for rows.Next() {
			var k key
			var host hostOf
			var up bool
			if err := rows.Scan(&host, &k.port, &up); err != nil {
				rows.Close()
				return nil, s.describe("read results from", err)
			}
			k.host = string(host)
			i, ok := at[k]
			if !ok {
				i = len(out)
				at[k] = i
				out = append(out, Uptime{Host: k.host, Port: k.port})
			}
			out[i].Rounds++
			if up {
				out[i].Up++
			}
		}
		err = rows.Err()
		rows.Close()
		if err != nil {
			return nil, s.describe("read results from", err)
		}
	}
	return out, nil
}

// ParseRoundRef parses "W:R", round R of watch W (R "last" or empty: the
// last recorded round, n 0).
func ParseRoundRef(s string) (w int64, n uint64, ok bool) {
	for i := 0; i < len(s); i++ {
		if s[i] != ':' {
			continue
		}
		wv, err := strconv.ParseInt(s[:i], 10, 64)
		if err != nil || wv < 1 {
			return 0, 0, false
		}
		r := s[i+1:]
		if r == "" || r == "last" {
			return wv, 0, true
		}
		nv, err := strconv.ParseUint(r, 10, 64)
		if err != nil || nv < 1 {
			return 0, 0, false
		}
		return wv, nv, true
	}
	return 0, 0, false
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}
