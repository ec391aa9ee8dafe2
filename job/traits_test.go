package job_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/fanout/fanout/job"
	_ "github.com/fanout/fanout/job/exec"
	_ "github.com/fanout/fanout/job/icmp"
	_ "github.com/fanout/fanout/job/ssh"
	_ "github.com/fanout/fanout/job/tcp"
	"github.com/fanout/fanout/target"
)

type nopJob struct{}

func (nopJob) Kind() string { return "traits-test" }
func (nopJob) Run(_ context.Context, t target.Target) job.Result {
	r := job.For(t, "traits-test")
	r.Status = job.Up
	return r
}

func nopFactory(json.RawMessage) (job.Job, error) { return nopJob{}, nil }

// A kind registered without its traits (or with traits that do not add
// up) is refused at registration, naming the kind and the trait.
func TestRegisterRefusesMissingTraits(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name   string
		traits job.Traits
		want   string
	}{
		{"traits-test-zero", job.Traits{}, "TaskSize"},
		{"traits-test-inverted", job.Traits{TaskSize: [2]uint64{64, 4}}, "TaskSize"},
		{"traits-test-fds", job.Traits{TaskSize: [2]uint64{1, 1}, FDsPerTarget: -1}, "FDsPerTarget"},
	} {
		func() {
			defer func() {
				msg, _ := recover().(string)
				if !strings.Contains(msg, c.name) || !strings.Contains(msg, c.want) {
					t.Errorf("Register(%q, %+v): panic %q, want one naming the kind and %s", c.name, c.traits, msg, c.want)
				}
			}()
			job.Register(c.name, c.traits, nopFactory)
		}()
		if _, ok := job.TraitsOf(c.name); ok {
			t.Errorf("%s: registered despite its traits", c.name)
		}
	}
}

// Every built-in kind registers its traits, and they are the ones the rest
// of fanout asks for.
func TestBuiltinTraits(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		kind          string
		fds           int
		prints, local bool
		lends         bool
		port, user    bool
		expands       bool
	}{
		{"ping", 0, false, false, false, false, false, false},
		{"tcp", 1, false, false, false, false, false, true},
		{"exec", 8, true, true, false, true, false, false},
		{"ssh", 1, true, false, true, true, true, false},
	} {
		tr, ok := job.TraitsOf(c.kind)
		if !ok {
			t.Errorf("%s: not registered", c.kind)
			continue
		}
		if tr.TaskSize[0] < 1 || tr.TaskSize[1] < tr.TaskSize[0] {
			t.Errorf("%s: TaskSize %v", c.kind, tr.TaskSize)
		}
		if tr.FDsPerTarget != c.fds || tr.PrintsOutput != c.prints || tr.Local != c.local || tr.LendsIdentity != c.lends ||
			tr.Takes.Port != c.port || tr.Takes.User != c.user || (tr.Expander != nil) != c.expands {
			t.Errorf("%s: traits %+v", c.kind, tr)
		}
		if job.PrintsOutput(c.kind) != c.prints {
			t.Errorf("%s: PrintsOutput %v", c.kind, job.PrintsOutput(c.kind))
		}
	}
	if _, ok := job.TraitsOf("nosuch"); ok || job.PrintsOutput("nosuch") {
		t.Errorf("an unknown kind has traits")
	}
	x, err := job.NewExpander("tcp", json.RawMessage(`{"ports":[22,80]}`))
	if err != nil || x == nil {
		t.Fatalf("tcp expander: %v, %v", x, err)
	}
	if x, err := job.NewExpander("ping", nil); x != nil || err != nil {
		t.Fatalf("ping expander: %v, %v", x, err)
	}
}
