package cli_test

// End-to-end tests: the real fanout binary, built once per test binary, run
// as a user would run it. Everything they probe is on loopback or inside the
// lab namespace.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/fanout/fanout/internal/lab"
	"github.com/fanout/fanout/internal/testwait"
	"github.com/fanout/fanout/job"
)

var (
	binOnce sync.Once
	binPath string
	binErr  error
	binDir  string
)

func TestMain(m *testing.M) {
	// lab.Main re-executes this binary inside the lab namespace when it can;
	// the binary under test is built by whichever process runs the tests.
	labWanted := !lab.InLab() && os.Getenv(lab.EnvDisable) == ""
	if ok, _ := lab.Available(); ok && labWanted {
		lab.Main(m) // exits
	}
	// fanout server keeps the credentials it makes under XDG_STATE_HOME,
	// where the same user's clients find them: the tests' servers and
	// clients share one, away from the real home.
	state, err := os.MkdirTemp("", "fanout-cli-state-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Setenv("XDG_STATE_HOME", state)
	code := m.Run()
	os.RemoveAll(state)
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// fanoutBin builds cmd/fanout once (with -race and -tags fanout_debug when
// the tests run with them).
func fanoutBin(t testing.TB) string {
	t.Helper()
	binOnce.Do(func() {
		binDir, binErr = os.MkdirTemp("", "fanout-cli-test-")
		if binErr != nil {
			return
		}
		binPath = filepath.Join(binDir, "fanout")
		args := []string{"build", "-o", binPath}
		if raceEnabled {
			args = append(args, "-race")
		}
		if debugBuild {
			args = append(args, "-tags", "fanout_debug")
		}
		args = append(args, "github.com/fanout/fanout/cmd/fanout")
		out, err := exec.Command(goTool(), args...).CombinedOutput()
		if err != nil {
			binErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binPath
}

// goTool is the go command that is running these tests: go test puts its
// own GOROOT/bin first in the tests' PATH.
func goTool() string { return "go" }

// run is one fanout invocation's outcome.
type run struct {
	stdout, stderr string
	code           int
}

// fanout runs the binary with args (and stdin when not empty), bounded in time.
func fanout(t *testing.T, stdin string, args ...string) run {
	t.Helper()
	return command(t, stdin, fanoutBin(t), args...)
}

// commandTimeout bounds one command: a hang fails the test, a machine under
// load does not.
const commandTimeout = testwait.Hang

// command runs name with args (and stdin when not empty), bounded in time.
func command(t *testing.T, stdin, name string, args ...string) run {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), commandTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	err := cmd.Run()
	r := run{stdout: out.String(), stderr: errb.String()}
	if ee, ok := err.(*exec.ExitError); ok {
		r.code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("%s %q: %v", name, args, err)
	}
	if ctx.Err() != nil {
		t.Fatalf("%s %q: still running after %v; stderr:\n%s", name, args, commandTimeout, r.stderr)
	}
	return r
}

// results parses JSONL output.
func results(t *testing.T, s string) []job.Result {
	t.Helper()
	var rs []job.Result
	for _, line := range strings.Split(strings.TrimSpace(s), "\n") {
		if line == "" {
			continue
		}
		var r job.Result
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("jsonl line %q: %v", line, err)
		}
		rs = append(rs, r)
	}
	return rs
}

// byHost indexes Results by "host" or "host:port".
func byHost(rs []job.Result) map[string]job.Result {
	m := make(map[string]job.Result, len(rs))
	for _, r := range rs {
		k := r.Host
		if r.Port != 0 {
			k = fmt.Sprintf("%s:%d", r.Host, r.Port)
		}
		m[k] = r
	}
	return m
}
