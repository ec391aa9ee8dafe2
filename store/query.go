package store

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"time"

	"github.com/fanout/fanout/job"
)

// Query selects stored Results of one sweep. Empty fields select all.
type Query struct {
	Status []job.Status // any of these statuses
	Class  []job.Class  // any of these error classes
}

func (q Query) where() (string, []any) {
	var (
		clauses []string
		args    []any
	)
	if len(q.Status) > 0 {
		clauses = append(clauses, "code IN (SELECT code FROM statuses WHERE status IN ("+placeholders(len(q.Status))+"))")
		for _, s := range q.Status {
			args = append(args, string(s))
		}
	}
	if len(q.Class) > 0 {
		clauses = append(clauses, "code IN (SELECT code FROM statuses WHERE class IN ("+placeholders(len(q.Class))+"))")
		for _, c := range q.Class {
			args = append(args, string(c))
		}
	}
	if len(clauses) == 0 {
		return "", nil
	}
	return " AND " + strings.Join(clauses, " AND "), args
}

func placeholders(n int) string {
	return strings.TrimSuffix(strings.Repeat("?,", n), ",")
}

// resultCols is the select list that scan reads: ResultColumns, in order.
var resultCols = func() string {
	var cols []string
	for _, c := range resultColumns {
		cols = append(cols, c.read)
	}
	return strings.Join(cols, ", ")
}()

// upCodes is SQL for the codes of up Results.
const upCodes = `(SELECT code FROM statuses WHERE status='up')`

// Results calls fn with sweep id's Results that match q, in index order,
// streaming (a /8 is never held in memory). fn's error stops the scan.
func (s *Store) Results(ctx context.Context, id int64, q Query, fn func(job.Result) error) error {
	sw, err := s.Sweep(id)
	if err != nil {
		return err
	}
	where, args := q.where()
	return s.scan(ctx, sw.Spec.Job, `SELECT `+resultCols+` FROM results WHERE `+inSweep(id)+where+` ORDER BY sweep_idx`,
		args, fn)
}

// ResultsByTarget calls fn with sweep id's Results ordered by target (host
// as CompareHosts orders them, then port, then index): what diff merges two
// sweeps on.
func (s *Store) ResultsByTarget(ctx context.Context, id int64, fn func(job.Result) error) error {
	sw, err := s.Sweep(id)
	if err != nil {
		return err
	}
	return s.scan(ctx, sw.Spec.Job, `SELECT `+resultCols+` FROM results WHERE `+inSweep(id)+` ORDER BY host COLLATE `+targetCollation+`, port, sweep_idx`,
		nil, fn)
}

// Slowest returns up to n of sweep id's up Results with the longest RTT.
func (s *Store) Slowest(ctx context.Context, id int64, n int) ([]job.Result, error) {
	return s.collect(ctx, id, `SELECT `+resultCols+` FROM results WHERE `+inSweep(id)+` AND code IN `+upCodes+` AND rtt_ns>0
		ORDER BY rtt_ns DESC, sweep_idx LIMIT ?`, n)
}

// Failing returns up to n of sweep id's Results that are not up, in index order.
func (s *Store) Failing(ctx context.Context, id int64, n int) ([]job.Result, error) {
	return s.collect(ctx, id, `SELECT `+resultCols+` FROM results WHERE `+inSweep(id)+` AND code NOT IN `+upCodes+`
		ORDER BY sweep_idx LIMIT ?`, n)
}

func (s *Store) collect(ctx context.Context, id int64, q string, n int) ([]job.Result, error) {
	sw, err := s.Sweep(id)
	if err != nil {
		return nil, err
	}
	var out []job.Result
	err = s.scan(ctx, sw.Spec.Job, q, []any{n}, func(r job.Result) error {
		out = append(out, r)
		return nil
	})
	return out, err
}

func (s *Store) scan(ctx context.Context, kind, q string, args []any, fn func(job.Result) error) error {
	statuses, err := s.statuses(ctx)
	if err != nil {
		return err
	}
	rows, err := s.db.QueryContext(ctx, q, args...)
	if err != nil {
		return s.describe("read results from", err)
	}
	defer rows.Close()
	// One holder per column, of the type its field's Kind scans into.
	cols := resultColumns
	var (
		ints   = make([]int64, len(cols))
		strs   = make([]string, len(cols))
		nulls  = make([]sql.NullInt64, len(cols))
		blobs  = make([][]byte, len(cols))
		isBlob = make([]bool, len(cols))
		hosts  = make([]hostOf, len(cols))
		dest   []any
	)
	for i, c := range cols {
		switch {
		case c.dec == asHost:
			dest = append(dest, &hosts[i])
		case c.dec != asKind:
			dest = append(dest, &ints[i])
		case c.Field.Kind == job.KindString:
			dest = append(dest, &strs[i])
		case c.Field.Kind == job.KindOptInt:
			dest = append(dest, &nulls[i])
		case c.Field.Kind == job.KindBytes:
			dest = append(dest, &blobs[i], &isBlob[i])
		default:
			dest = append(dest, &ints[i])
		}
	}
	var r job.Result // outside the loop: set through the table, it lives on the heap
	for rows.Next() {
		if err := rows.Scan(dest...); err != nil {
			return s.describe("read results from", err)
		}
		r = job.Result{Job: kind}
		for i, c := range cols {
			switch c.dec {
			case asHost:
				strs[i] = string(hosts[i])
			case asStatus, asClass:
				sc, err := statuses.get(ints[i])
				if err != nil {
					return err
				}
				strs[i] = string(sc.status)
				if c.dec == asClass {
					strs[i] = string(sc.class)
				}
			}
			switch p := c.Field.Ptr(&r); c.Field.Kind {
			case job.KindUint:
				*p.(*uint64) = uint64(ints[i])
			case job.KindInt:
				*p.(*int) = int(ints[i])
			case job.KindString:
				*p.(*string) = strs[i]
			case job.KindDuration:
				*p.(*time.Duration) = time.Duration(ints[i])
			case job.KindOptInt:
				if nulls[i].Valid {
					v := int(nulls[i].Int64)
					*p.(**int) = &v
				}
			case job.KindBytes:
				// An empty output scans as nil; it was there, and empty.
				if isBlob[i] && blobs[i] == nil {
					blobs[i] = []byte{}
				}
				*p.(*[]byte) = blobs[i]
			case job.KindBool:
				*p.(*bool) = ints[i] != 0
			case job.KindTime:
				if ints[i] != 0 {
					*p.(*time.Time) = time.Unix(0, ints[i])
				}
			default:
				return fmt.Errorf("store: no column reader for field %s of kind %v", c.Field.Name, c.Field.Kind)
			}
		}
		if err := fn(r); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return s.describe("read results from", err)
	}
	return nil
}

// Point is the light form of a Result that reports and maps need.
type Point struct {
	Index  uint64
	Host   string
	Addr   string
	Status job.Status
	Class  job.Class
	RTT    time.Duration
}

// Points calls fn with every Result of sweep id in its light form, in storage
// order: a full scan that reads a fraction of each row.
func (s *Store) Points(ctx context.Context, id int64, fn func(Point) error) error {
	statuses, err := s.statuses(ctx)
	if err != nil {
		return err
	}
	rows, err := s.db.QueryContext(ctx, `SELECT sweep_idx & 1099511627775, host, COALESCE(addr, host), code, rtt_ns FROM results WHERE `+inSweep(id))
	if err != nil {
		return s.describe("read results from", err)
	}
	defer rows.Close()
	for rows.Next() {
		var (
			p              Point
			idx, code, rtt int64
			host, addr     hostOf
		)
		if err := rows.Scan(&idx, &host, &addr, &code, &rtt); err != nil {
			return s.describe("read results from", err)
		}
		sc, err := statuses.get(code)
		if err != nil {
			return err
		}
		p.Index, p.Host, p.Addr, p.Status, p.Class, p.RTT = uint64(idx), string(host), string(addr), sc.status, sc.class, time.Duration(rtt)
		if err := fn(p); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return s.describe("read results from", err)
	}
	return nil
}
