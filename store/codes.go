package store

import (
	"context"
	"database/sql/driver"
	"fmt"
	"io"

	sqlite "modernc.org/sqlite"

	"github.com/fanout/fanout/job"
)

// fanout_ipv4(x) is x as compactSchema stores a host: a canonical IPv4
// address as an integer (hostValue), anything else as it is. Only the
// migration calls it: nothing in the file names it.
func init() {
	sqlite.MustRegisterDeterministicScalarFunction("fanout_ipv4", 1, func(_ *sqlite.FunctionContext, args []driver.Value) (driver.Value, error) {
		if h, ok := args[0].(string); ok {
			return hostValue(h), nil
		}
		return args[0], nil
	})
}

// statusKey is a Result's status and error class: what a code in results
// stands for (the statuses table).
type statusKey struct {
	status job.Status
	class  job.Class
}

// codes is a Writer's copy of the statuses table. A pair it has not seen is
// added to the table in the transaction of the batch that holds it, and
// forgotten again if that transaction rolls back.
type codes struct {
	of map[statusKey]int64
	// The last pair looked up and its code: most batches are of one status.
	last     statusKey
	lastCode int64
	lastOK   bool
	added    []statusKey // in the open transaction

	add, get driver.Stmt // INSERT OR IGNORE the pair; SELECT its code
}

// code is the code of a pair intern has seen (boxed: codes are small, so
// boxing does not allocate).
func (c *codes) code(st job.Status, cl job.Class) any {
	if k := (statusKey{st, cl}); !c.lastOK || k != c.last {
		c.last, c.lastCode, c.lastOK = k, c.of[k], true
	}
	return c.lastCode
}

// intern gives every pair of b a code, adding the new ones to the table.
func (c *codes) intern(b []job.Result) error {
	for i := range b {
		k := statusKey{b[i].Status, b[i].Class}
		if c.lastOK && k == c.last {
			continue
		}
		if code, ok := c.of[k]; ok {
			c.last, c.lastCode, c.lastOK = k, code, true
			continue
		}
		if _, err := c.add.(driver.StmtExecContext).ExecContext(context.Background(),
			[]driver.NamedValue{{Ordinal: 1, Value: string(k.status)}, {Ordinal: 2, Value: string(k.class)}}); err != nil {
			return fmt.Errorf("status %q class %q: %w", k.status, k.class, err)
		}
		rows, err := c.get.(driver.StmtQueryContext).QueryContext(context.Background(),
			[]driver.NamedValue{{Ordinal: 1, Value: string(k.status)}, {Ordinal: 2, Value: string(k.class)}})
		if err != nil {
			return fmt.Errorf("status %q class %q: %w", k.status, k.class, err)
		}
		v := make([]driver.Value, 1)
		err = rows.Next(v)
		rows.Close()
		code, ok := v[0].(int64)
		if err != nil || !ok {
			if err == nil || err == io.EOF {
				err = fmt.Errorf("no code after insert (%T)", v[0])
			}
			return fmt.Errorf("status %q class %q: %w", k.status, k.class, err)
		}
		c.of[k] = code
		c.added = append(c.added, k)
		c.last, c.lastCode, c.lastOK = k, code, true
	}
	return nil
}

// commit keeps the pairs added in the transaction; rollback forgets them.
func (c *codes) commit() { c.added = c.added[:0] }

func (c *codes) rollback() {
	for _, k := range c.added {
		delete(c.of, k)
	}
	c.added = c.added[:0]
	c.lastOK = false
}

// statuses is a reader's copy of the statuses table: code -> status and
// class. A code it does not have was added since it was read (a sweep
// writing while it is read): it reads the table again.
type statuses struct {
	s   *Store
	ctx context.Context
	of  map[int64]statusKey
}

func (s *Store) statuses(ctx context.Context) (*statuses, error) {
	st := &statuses{s: s, ctx: ctx}
	return st, st.read()
}

func (st *statuses) read() error {
	rows, err := st.s.db.QueryContext(st.ctx, `SELECT code, status, class FROM statuses`)
	if err != nil {
		return st.s.describe("read results from", err)
	}
	defer rows.Close()
	m := map[int64]statusKey{}
	for rows.Next() {
		var code int64
		var s, c string
		if err := rows.Scan(&code, &s, &c); err != nil {
			return st.s.describe("read results from", err)
		}
		m[code] = statusKey{job.Status(s), job.Class(c)}
	}
	if err := rows.Err(); err != nil {
		return st.s.describe("read results from", err)
	}
	st.of = m
	return nil
}

// get is code's status and class.
func (st *statuses) get(code int64) (statusKey, error) {
	if k, ok := st.of[code]; ok {
		return k, nil
	}
	if err := st.read(); err != nil {
		return statusKey{}, err
	}
	if k, ok := st.of[code]; ok {
		return k, nil
	}
	return statusKey{}, fmt.Errorf("%s: results hold status code %d, which is not in its statuses table (damaged?)", st.s.path, code)
}

// hostOf is a host or addr column's value as text (see hostValue).
type hostOf string

func (h *hostOf) Scan(v any) error {
	switch x := v.(type) {
	case int64:
		*h = hostOf(formatIPv4(x))
	case string:
		*h = hostOf(x)
	case []byte:
		*h = hostOf(x)
	case nil:
		*h = ""
	default:
		return fmt.Errorf("host of type %T", v)
	}
	return nil
}
