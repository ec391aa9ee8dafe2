package jobtest

import (
	"fmt"
	"reflect"
	"strconv"
	"time"

	"github.com/fanout/fanout/job"
)

// FullResult is a Result with every field of job.Fields set, by its Kind, to
// a value that is not zero and differs from the other fields' and from
// other indexes' values: what a test of a form (JSON, CSV, the store, the
// wire) sends through it to see that every field comes back. Strings and
// outputs hold JSON's and CSV's special characters, in valid UTF-8 (which
// both forms keep as is); durations are whole microseconds (JSON's
// precision). i is added to the index, which is 1,000,000 + i.
func FullResult(i int) job.Result {
	var r job.Result
	fs := job.Fields()
	for k := range fs {
		f := &fs[k]
		switch p := f.Ptr(&r); f.Kind {
		case job.KindUint:
			*p.(*uint64) = uint64(1_000_000*(k+1) + i)
		case job.KindInt:
			*p.(*int) = 10*k + i + 1
		case job.KindString:
			*p.(*string) = fmt.Sprintf("%s %d, \"q\" <é>", f.Name, i)
		case job.KindDuration:
			*p.(*time.Duration) = time.Duration(1000*(k+1)+i) * time.Microsecond
		case job.KindOptInt:
			v := k + i + 1
			*p.(**int) = &v
		case job.KindBytes:
			*p.(*[]byte) = fmt.Appendf(nil, "%s %d\n\"q\", <é>\t\u2028", f.Name, i)
		case job.KindBool:
			*p.(*bool) = true
		case job.KindTime:
			*p.(*time.Time) = time.Date(2026, 1, 2, 3, 4, k, 1000*i+7, time.UTC)
		case job.KindRatio: // derived
		default:
			panic("jobtest: FullResult: no value for field " + f.Name + " of kind " + f.Kind.String())
		}
	}
	return r
}

// FieldValue is field f of r in a form to compare and print: times as UTC
// instants, nil told apart from empty.
func FieldValue(f *job.Field, r *job.Result) string {
	if f.Kind == job.KindRatio {
		v, ok := f.Ratio(r)
		if !ok {
			return "none"
		}
		return strconv.FormatFloat(v, 'g', -1, 64)
	}
	switch p := f.Ptr(r).(type) {
	case *uint64:
		return strconv.FormatUint(*p, 10)
	case *int:
		return strconv.Itoa(*p)
	case *string:
		return strconv.Quote(*p)
	case *time.Duration:
		return p.String()
	case **int:
		if *p == nil {
			return "nil"
		}
		return strconv.Itoa(**p)
	case *[]byte:
		if *p == nil {
			return "nil"
		}
		return strconv.Quote(string(*p))
	case *bool:
		return strconv.FormatBool(*p)
	case *time.Time:
		return p.UTC().Format(time.RFC3339Nano)
	}
	panic("jobtest: FieldValue: field " + f.Name + " of kind " + f.Kind.String())
}

// FieldValues are the FieldValue of each field of job.Fields in r.
func FieldValues(r *job.Result) []string {
	fs := job.Fields()
	vs := make([]string, len(fs))
	for k := range fs {
		vs[k] = FieldValue(&fs[k], r)
	}
	return vs
}

// ZeroFields zeroes every field of r through the table. A round-trip test
// takes FieldValues before it sends r through a form, then zeroes r before
// it reads the copy back: a field the test build keeps beside the Result
// (keyed by index, shared by every copy) is then compared with what the
// form gave back, not with itself.
func ZeroFields(r *job.Result) {
	fs := job.Fields()
	for k := len(fs) - 1; k >= 0; k-- { // the index (which finds that storage) last
		if p := fs[k].Ptr(r); p != nil {
			reflect.ValueOf(p).Elem().SetZero()
		}
	}
}

// SameFields reports, one line per field, where got differs from want
// (FieldValues of the Result sent): empty when every field came back.
func SameFields(want []string, got *job.Result) []string {
	var diffs []string
	fs := job.Fields()
	for k := range fs {
		if g := FieldValue(&fs[k], got); g != want[k] {
			diffs = append(diffs, fmt.Sprintf("field %s: sent %s, got back %s", fs[k].Name, want[k], g))
		}
	}
	return diffs
}
