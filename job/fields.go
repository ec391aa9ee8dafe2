package job

import (
	"fmt"
	"time"
)

// Kind is how a Result field holds its value, and so how each form of a
// Result (JSON, CSV, the store, the cluster's wire) writes it.
type Kind uint8

const (
	KindUint     Kind = iota + 1 // uint64 (the index)
	KindInt                      // int
	KindString                   // string, or a string type (Status, Class)
	KindDuration                 // time.Duration: milliseconds in JSON and CSV, nanoseconds elsewhere
	KindRatio                    // float64 in [0, 1], derived from other fields (loss)
	KindOptInt                   // *int: absent is not 0 (exit code)
	KindBytes                    // []byte: absent (nil) is not empty
	KindBool                     // bool
	KindTime                     // time.Time: RFC 3339 UTC in JSON and CSV, Unix nanoseconds in the store
)

var kindNames = [...]string{KindUint: "uint", KindInt: "int", KindString: "string", KindDuration: "duration",
	KindRatio: "ratio", KindOptInt: "optional int", KindBytes: "bytes", KindBool: "bool", KindTime: "time"}

func (k Kind) String() string {
	if int(k) < len(kindNames) && kindNames[k] != "" {
		return kindNames[k]
	}
	return fmt.Sprintf("Kind(%d)", uint8(k))
}

// Field is one field of Result: its name in each form and how to reach it.
// Fields lists them all, once; JSON, CSV, the store's columns and the
// cluster's wire codec are all written from that list.
type Field struct {
	Name   string // the Result field; for a derived one, Result's method of that name in lower case (loss)
	JSON   string // key of the JSON form (output/SCHEMA.md)
	CSV    string // column of the CSV form
	Column string // column of the store's results table; "" when not stored per row (the job kind is the sweep's)
	Kind   Kind
	// Always: written in JSON and CSV even when zero. Other fields are
	// omitted when zero (0, "", nil, false), an empty cell in CSV.
	Always bool
	// Derived: computed from other fields (loss), so it is written in JSON
	// and CSV only: not stored, not sent on the wire, not read back.
	Derived bool
	// Repeats: a string that many Results of a sweep share (job kind,
	// status, class, a common error, worker): a decoder keeps one copy.
	Repeats bool

	jsonKey string                        // `,"json":`, written before the value
	at      func(*Result) any             // pointer to the field, of the Kind's Go type
	ratio   func(*Result) (float64, bool) // KindRatio: Result's method named like the field, lower case
}

// resultFields is the table, in the order of the JSON form, of the CSV
// columns and of the wire form's fields. Append only: the JSON and CSV
// forms are a public contract (fields are added, never renamed, removed or
// reordered). A new field needs its JSON key and CSV column documented in
// output/SCHEMA.md, a store migration adding its column (store/schema.go),
// and the generated code refreshed: go test ./job ./cluster -run Generated -update
var resultFields = withTestFields([]Field{
	{Name: "Index", JSON: "index", Column: "sweep_idx", Always: true, at: func(r *Result) any { return &r.Index }},
	{Name: "Host", JSON: "host", Column: "host", Always: true, at: func(r *Result) any { return &r.Host }},
	{Name: "Addr", JSON: "addr", Column: "addr", at: func(r *Result) any { return &r.Addr }},
	{Name: "Port", JSON: "port", Column: "port", at: func(r *Result) any { return &r.Port }},
	{Name: "Job", JSON: "job", Always: true, Repeats: true, at: func(r *Result) any { return &r.Job }},
	{Name: "Status", JSON: "status", Column: "status", Always: true, Repeats: true, at: func(r *Result) any { return (*string)(&r.Status) }},
	{Name: "Class", JSON: "class", Column: "class", Repeats: true, at: func(r *Result) any { return (*string)(&r.Class) }},
	{Name: "Error", JSON: "error", Column: "error", Repeats: true, at: func(r *Result) any { return &r.Error }},
	{Name: "RTT", JSON: "rtt_ms", Column: "rtt_ns", at: func(r *Result) any { return &r.RTT }},
	{Name: "Sent", JSON: "sent", Column: "sent", at: func(r *Result) any { return &r.Sent }},
	{Name: "Recv", JSON: "recv", Column: "recv", at: func(r *Result) any { return &r.Recv }},
	{Name: "Loss", JSON: "loss", Derived: true, Kind: KindRatio, ratio: (*Result).loss},
	{Name: "RTTMin", JSON: "rtt_min_ms", Column: "rtt_min_ns", at: func(r *Result) any { return &r.RTTMin }},
	{Name: "RTTAvg", JSON: "rtt_avg_ms", Column: "rtt_avg_ns", at: func(r *Result) any { return &r.RTTAvg }},
	{Name: "RTTMax", JSON: "rtt_max_ms", Column: "rtt_max_ns", at: func(r *Result) any { return &r.RTTMax }},
	{Name: "ExitCode", JSON: "exit_code", Column: "exit_code", at: func(r *Result) any { return &r.ExitCode }},
	{Name: "Stdout", JSON: "stdout", Column: "stdout", at: func(r *Result) any { return &r.Stdout }},
	{Name: "Stderr", JSON: "stderr", Column: "stderr", at: func(r *Result) any { return &r.Stderr }},
	{Name: "Truncated", JSON: "truncated", Column: "truncated", at: func(r *Result) any { return &r.Truncated }},
	{Name: "Attempts", JSON: "attempts", Column: "attempts", Always: true, at: func(r *Result) any { return &r.Attempts }},
	{Name: "Start", JSON: "start", Column: "start_ns", Always: true, at: func(r *Result) any { return &r.Start }},
	{Name: "End", JSON: "end", Column: "end_ns", Always: true, at: func(r *Result) any { return &r.End }},
	{Name: "Worker", JSON: "worker", Column: "worker", Repeats: true, at: func(r *Result) any { return &r.Worker }},
	{Name: "RTTStddev", JSON: "rtt_stddev_ms", Column: "rtt_stddev_ns", at: func(r *Result) any { return &r.RTTStddev }},
})

// Fields returns the Result's fields in the order of its JSON and CSV
// forms. The slice is shared: callers must not modify it.
func Fields() []Field { return resultFields }

// withTestFields completes the table (kinds, JSON keys, CSV names from the
// accessors) and appends the fields a test build adds (testfield_on.go).
func withTestFields(fs []Field) []Field {
	fs = append(fs, testFields...)
	for i := range fs {
		f := &fs[i]
		if f.Kind == 0 {
			f.Kind = kindOf(f.at(new(Result)))
		}
		if f.CSV == "" {
			f.CSV = f.JSON
		}
		f.jsonKey = `,"` + f.JSON + `":`
	}
	return fs
}

// kindOf is the Kind of a field from the type of its pointer.
func kindOf(p any) Kind {
	switch p.(type) {
	case *uint64:
		return KindUint
	case *int:
		return KindInt
	case *string:
		return KindString
	case *time.Duration:
		return KindDuration
	case **int:
		return KindOptInt
	case *[]byte:
		return KindBytes
	case *bool:
		return KindBool
	case *time.Time:
		return KindTime
	}
	panic(fmt.Sprintf("job: Result field of type %T has no Kind", p))
}

// Ptr returns a pointer to f's value in r, of the Go type of f's Kind:
// *uint64, *int, *string, *time.Duration, **int, *[]byte, *bool or
// *time.Time. It is nil for a derived field (see Ratio).
func (f *Field) Ptr(r *Result) any {
	if f.at == nil {
		return nil
	}
	return f.at(r)
}

// Ratio returns a KindRatio field's value and whether r has one.
func (f *Field) Ratio(r *Result) (float64, bool) {
	if f.ratio == nil {
		return 0, false
	}
	return f.ratio(r)
}

// IsZero reports whether f's value in r is its zero value (0, "", nil,
// false, the zero time; for a ratio, that there is none): what the forms
// omit unless f is Always.
func (f *Field) IsZero(r *Result) bool {
	switch f.Kind {
	case KindUint:
		return *f.at(r).(*uint64) == 0
	case KindInt:
		return *f.at(r).(*int) == 0
	case KindString:
		return *f.at(r).(*string) == ""
	case KindDuration:
		return *f.at(r).(*time.Duration) == 0
	case KindRatio:
		_, ok := f.ratio(r)
		return !ok
	case KindOptInt:
		return *f.at(r).(**int) == nil
	case KindBytes:
		return *f.at(r).(*[]byte) == nil
	case KindBool:
		return !*f.at(r).(*bool)
	case KindTime:
		return f.at(r).(*time.Time).IsZero()
	}
	panic("job: field " + f.Name + " of unknown kind " + f.Kind.String())
}
