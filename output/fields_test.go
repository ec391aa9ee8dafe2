package output_test

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"strconv"
	"testing"
	"time"

	"github.com/fanout/fanout/job"
	"github.com/fanout/fanout/job/jobtest"
	"github.com/fanout/fanout/output"
)

// TestResultFieldsCSV: the CSV header is the table's columns in order, and
// every field of a full Result is in its cell in the JSON form's units; a
// zero Result fills only the Always columns. The JSONL writer carries every
// field. Run with -tags fanout_testfield, the table has one field more.
func TestResultFieldsCSV(t *testing.T) {
	// Not parallel: the test build keeps its extra field beside the
	// Result, by index, and these tests share indexes.
	fs := job.Fields()
	rs := []job.Result{jobtest.FullResult(11), jobtest.FullResult(12), {}}
	var cb, jb bytes.Buffer
	cw, _ := output.New("csv", &cb, output.Filter{})
	jw, _ := output.New("jsonl", &jb, output.Filter{})
	for _, r := range rs {
		if err := cw.Write(r); err != nil {
			t.Fatal(err)
		}
		if err := jw.Write(r); err != nil {
			t.Fatal(err)
		}
	}
	cw.Close()
	jw.Close()
	rows, err := csv.NewReader(&cb).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != len(rs)+1 || len(rows[0]) != len(fs) {
		t.Fatalf("%d rows of %d columns, want %d of %d", len(rows), len(rows[0]), len(rs)+1, len(fs))
	}
	dec := json.NewDecoder(&jb)
	for i := range rs {
		var keys map[string]any
		if err := dec.Decode(&keys); err != nil {
			t.Fatal(err)
		}
		r := &rs[i]
		for k := range fs {
			f := &fs[k]
			if rows[0][k] != f.CSV {
				t.Errorf("CSV column %d is %q, the table's field %s says %q", k, rows[0][k], f.Name, f.CSV)
			}
			cell := rows[i+1][k]
			if _, ok := keys[f.JSON]; ok != (f.Always || !f.IsZero(r)) {
				t.Errorf("result %d: JSONL has %s: %v", i, f.JSON, ok)
			}
			if want := csvValue(f, r); cell != want {
				t.Errorf("result %d: CSV column %s is %q, want %q (field %s = %s)", i, f.CSV, cell, want, f.Name, jobtest.FieldValue(f, r))
			}
		}
	}
}

// csvValue is what SCHEMA.md says the CSV cell of f holds.
func csvValue(f *job.Field, r *job.Result) string {
	if !f.Always && f.IsZero(r) {
		return ""
	}
	if f.Kind == job.KindRatio {
		v, _ := f.Ratio(r)
		return strconv.FormatFloat(v, 'f', -1, 64)
	}
	switch p := f.Ptr(r).(type) {
	case *string:
		return *p
	case *[]byte:
		return string(*p) // valid UTF-8 in these Results
	case *time.Duration:
		return strconv.FormatFloat(float64(p.Microseconds())/1e3, 'f', -1, 64)
	case *time.Time:
		return p.UTC().Format(time.RFC3339Nano)
	}
	return jobtest.FieldValue(f, r) // numbers, exit code, true
}
