package job_test

import (
	"encoding/json"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/fanout/fanout/job"
	"github.com/fanout/fanout/job/jobtest"
)

// TestFieldsCoverResult: every field of the Result struct is in the table,
// once, with the Kind of its Go type, and the table's names are unique in
// every form. A field added to the struct and not to the table fails here.
func TestFieldsCoverResult(t *testing.T) {
	t.Parallel()
	var r job.Result
	rv := reflect.ValueOf(&r).Elem()
	byName := map[string]*job.Field{}
	seen := map[string]map[string]bool{"name": {}, "json": {}, "csv": {}, "column": {}}
	fs := job.Fields()
	for i := range fs {
		f := &fs[i]
		for form, name := range map[string]string{"name": f.Name, "json": f.JSON, "csv": f.CSV, "column": f.Column} {
			if name == "" {
				if form != "column" { // not stored per row: the job kind
					t.Errorf("field %d (%s): no %s name", i, f.Name, form)
				}
				continue
			}
			if seen[form][name] {
				t.Errorf("field %s: %s name %q used twice", f.Name, form, name)
			}
			seen[form][name] = true
		}
		if f.Derived != (f.Kind == job.KindRatio) || f.Derived && f.Column != "" {
			t.Errorf("field %s: derived %v, kind %v, column %q", f.Name, f.Derived, f.Kind, f.Column)
		}
		byName[f.Name] = f
	}
	kinds := map[reflect.Type]job.Kind{
		reflect.TypeFor[uint64](): job.KindUint, reflect.TypeFor[int](): job.KindInt, reflect.TypeFor[string](): job.KindString,
		reflect.TypeFor[job.Status](): job.KindString, reflect.TypeFor[job.Class](): job.KindString,
		reflect.TypeFor[time.Duration](): job.KindDuration, reflect.TypeFor[*int](): job.KindOptInt,
		reflect.TypeFor[[]byte](): job.KindBytes, reflect.TypeFor[bool](): job.KindBool, reflect.TypeFor[time.Time](): job.KindTime,
	}
	for i := 0; i < rv.NumField(); i++ {
		sf := rv.Type().Field(i)
		f := byName[sf.Name]
		if f == nil {
			t.Errorf("Result.%s is not in job.Fields (fields.go): JSON, CSV, the store and the wire would miss it", sf.Name)
			continue
		}
		if f.Kind != kinds[sf.Type] {
			t.Errorf("field %s: kind %v, but Result.%s is a %v", f.Name, f.Kind, sf.Name, sf.Type)
		}
		if p := reflect.ValueOf(f.Ptr(&r)); p.Pointer() != rv.Field(i).Addr().Pointer() {
			t.Errorf("field %s: its accessor reaches another field of Result", f.Name)
		}
	}
}

// referenceJSON is r's JSON form with every value encoded by encoding/json,
// as MarshalJSON did before the table: AppendJSON must write the same bytes.
func referenceJSON(t *testing.T, r *job.Result) string {
	var parts []string
	fs := job.Fields()
	for i := range fs {
		f := &fs[i]
		if !f.Always && f.IsZero(r) {
			continue
		}
		var v any
		switch p := f.Ptr(r); f.Kind {
		case job.KindRatio:
			l, _ := f.Ratio(r)
			v = math.Round(l*1e4) / 1e4
		case job.KindDuration:
			v = math.Round(float64(*p.(*time.Duration))/1e3) / 1e3
		case job.KindBytes:
			v = string(*p.(*[]byte))
		case job.KindTime:
			v = p.(*time.Time).UTC().Format(time.RFC3339Nano)
		default:
			v = p
		}
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatalf("field %s: %v", f.Name, err)
		}
		parts = append(parts, `"`+f.JSON+`":`+string(b))
	}
	return "{" + strings.Join(parts, ",") + "}"
}

// TestResultFieldsJSON: the JSON form has every field of the table under
// its key, as encoding/json writes its value, omitted when zero unless
// Always, and UnmarshalJSON reads every field back.
func TestResultFieldsJSON(t *testing.T) {
	// Not parallel: the test build keeps its extra field beside the
	// Result, by index, and these tests share indexes.
	tricky := []string{"", "plain", `quote " and \ backslash`, "tab\tnew\nline\r\b\f", "\x00\x01\x1f\x7f",
		"<html> & co", "bad utf8 \xff\xfe end", "line sep \u2028 para \u2029", "emoji 🚀 é"}
	var rs []job.Result
	rs = append(rs, job.Result{}) // only the Always fields
	for i := range 40 {
		r := jobtest.FullResult(i)
		s := tricky[i%len(tricky)]
		r.Host, r.Error, r.Stdout = s, s, []byte(s)
		r.RTT = []time.Duration{1, 499, 500, 1500, 1234567, 3 * time.Second, -2500}[i%7]
		r.Start = r.Start.In(time.FixedZone("x", 3600))
		if i%3 == 0 {
			r.Stderr, r.ExitCode, r.Sent = []byte{}, nil, 0
		}
		rs = append(rs, r)
	}
	fs := job.Fields()
	for i, r := range rs {
		got := string(job.AppendJSON(nil, &r))
		if want := referenceJSON(t, &r); got != want {
			t.Fatalf("result %d:\n got %s\nwant %s", i, got, want)
		}
		if m, err := r.MarshalJSON(); err != nil || string(m) != got {
			t.Fatalf("result %d: MarshalJSON %s, %v; AppendJSON %s", i, m, err, got)
		}
		var keys map[string]any
		if err := json.Unmarshal([]byte(got), &keys); err != nil {
			t.Fatalf("result %d: %v in %s", i, err, got)
		}
		for k := range fs {
			f := &fs[k]
			if _, ok := keys[f.JSON]; ok == (!f.Always && f.IsZero(&r)) {
				t.Errorf("result %d: field %s: key %q present %v in %s", i, f.Name, f.JSON, ok, got)
			}
		}
		want := jobtest.FieldValues(&r)
		skip := map[int]bool{}
		for k := range fs {
			// durations under a microsecond and invalid UTF-8 do not come back as they were
			skip[k] = !exact(&fs[k], &r)
		}
		jobtest.ZeroFields(&r)
		var back job.Result
		if err := json.Unmarshal([]byte(got), &back); err != nil {
			t.Fatal(err)
		}
		for k := range fs {
			if g := jobtest.FieldValue(&fs[k], &back); !skip[k] && g != want[k] {
				t.Errorf("result %d: field %s: wrote %s, read back %s", i, fs[k].Name, want[k], g)
			}
		}
	}
	// The full Result carries every field.
	r := jobtest.FullResult(1)
	var keys map[string]any
	if err := json.Unmarshal(job.AppendJSON(nil, &r), &keys); err != nil {
		t.Fatal(err)
	}
	for k := range fs {
		if _, ok := keys[fs[k].JSON]; !ok {
			t.Errorf("JSON form of a full Result lacks field %s (%q)", fs[k].Name, fs[k].JSON)
		}
	}
	if len(keys) != len(fs) {
		t.Errorf("JSON form has %d keys, the table %d fields", len(keys), len(fs))
	}
}

// exact: f's value in r survives JSON (whole microseconds, valid UTF-8).
func exact(f *job.Field, r *job.Result) bool {
	switch p := f.Ptr(r).(type) {
	case *time.Duration:
		return *p%time.Microsecond == 0
	case *string:
		return strings.ToValidUTF8(*p, "\uFFFD") == *p
	case *[]byte:
		return strings.ToValidUTF8(string(*p), "\uFFFD") == string(*p)
	}
	return true
}

// TestUnmarshalJSONErrors: a field of the wrong type names itself.
func TestUnmarshalJSONErrors(t *testing.T) {
	t.Parallel()
	for _, in := range []string{`{"index":"x"}`, `{"rtt_ms":"fast"}`, `{"start":"yesterday"}`, `{"exit_code":1.5}`, `[]`} {
		var r job.Result
		err := json.Unmarshal([]byte(in), &r)
		if err == nil {
			t.Errorf("%s: no error", in)
			continue
		}
		if key := strings.Split(strings.TrimPrefix(in, `{"`), `"`)[0]; in[0] == '{' && !strings.Contains(err.Error(), key) {
			t.Errorf("%s: error %q does not name %q", in, err, key)
		}
	}
	// Fields a newer fanout adds, and loss, are ignored.
	var r job.Result
	if err := json.Unmarshal([]byte(`{"index":3,"loss":0.5,"new_field":[1]}`), &r); err != nil || r.Index != 3 {
		t.Errorf("got %+v, %v", r, err)
	}
}
