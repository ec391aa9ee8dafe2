package job_test

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/fanout/fanout/job"
)

type decodedConfig struct {
	N int `json:"n"`
}

// TestDecoded: the factory decodes the options strictly, hands the Config to
// the constructor, and a constructor's error comes back with a nil Job (not
// a typed nil that would pass a nil check).
func TestDecoded(t *testing.T) {
	t.Parallel()
	refuse := errors.New("n must be positive")
	f := job.Decoded("decoded-test", func(c decodedConfig) (*nopJob, error) {
		if c.N <= 0 {
			return nil, refuse
		}
		return &nopJob{}, nil
	})
	if j, err := f(json.RawMessage(`{"n":1}`)); err != nil || j == nil {
		t.Fatalf(`{"n":1}: %v, %v; want a job`, j, err)
	}
	if j, err := f(json.RawMessage(`{"n":0}`)); !errors.Is(err, refuse) || j != nil {
		t.Fatalf(`{"n":0}: %#v, %v; want nil and the constructor's error`, j, err)
	}
	if _, err := f(json.RawMessage(`{"n":1,"m":2}`)); err == nil || !strings.Contains(err.Error(), `decoded-test options {"n":1,"m":2}`) {
		t.Fatalf("unknown field: %v, want the kind and options named", err)
	}
}
