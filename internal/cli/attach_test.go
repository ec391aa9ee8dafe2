package cli_test

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// attach takes its server from --server, as every cluster command does; the
// older positional URL still works and says it is deprecated. status -o
// jsonl prints a typed line per sweep and per worker.
func TestAttachServerFlagAndStatusJSONL(t *testing.T) {
	t.Parallel()
	const n = 50
	url, _ := testServer(t)
	testWorker(t, url, "w1")
	r := fanout(t, "", append(refusedSweep(n, "0"), "--server", url, "--detach")...)
	if r.code != 0 {
		t.Fatalf("--detach: exit %d:\n%s", r.code, r.stderr)
	}
	id := strings.TrimSpace(r.stdout)
	if want := "fanout attach --server " + url + " " + id; !strings.Contains(r.stderr, want) {
		t.Errorf("--detach: the way back %q not printed:\n%s", want, r.stderr)
	}

	a := fanout(t, "", "attach", "--server", url, id, "-o", "jsonl", "--progress", "never")
	if a.code != 1 || strings.Contains(a.stderr, "deprecated") {
		t.Errorf("attach --server URL ID: exit %d, want 1 without a warning:\n%s", a.code, a.stderr)
	}
	checkOnce(t, a.stdout, n)
	old := fanout(t, "", "attach", url, id, "-o", "jsonl", "--progress", "never")
	if want := "'fanout attach URL SWEEP' is deprecated: use 'fanout attach --server " + url + " " + id + "'"; old.code != 1 || !strings.Contains(old.stderr, want) {
		t.Errorf("attach URL ID: exit %d, want 1 and %q:\n%s", old.code, want, old.stderr)
	}
	checkOnce(t, old.stdout, n)
	// The server from the environment, as for every cluster command.
	ctx, cancel := context.WithTimeout(context.Background(), commandTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, fanoutBin(t), "attach", id, "-o", "jsonl", "--progress", "never")
	cmd.Env = append(os.Environ(), "FANOUT_SERVER="+url)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 {
		t.Errorf("FANOUT_SERVER=%s fanout attach ID: %v, want exit 1:\n%s", url, err, stderr.String())
	}
	checkOnce(t, string(out), n)

	st := fanout(t, "", "status", "--server", url, "-o", "jsonl")
	if st.code != 0 {
		t.Fatalf("status -o jsonl: exit %d:\n%s", st.code, st.stderr)
	}
	types := map[string]int{}
	for _, line := range strings.Split(strings.TrimSpace(st.stdout), "\n") {
		var row struct {
			Type     string `json:"type"`
			ID       string `json:"id"`
			Total    uint64 `json:"total"`
			Complete bool   `json:"complete"`
			Name     string `json:"name"`
		}
		if err := json.Unmarshal([]byte(line), &row); err != nil {
			t.Fatalf("status -o jsonl: line %q: %v", line, err)
		}
		types[row.Type]++
		switch {
		case row.Type == "sweep" && (row.ID != id || row.Total != n || !row.Complete):
			t.Errorf("status -o jsonl: sweep line %q, want sweep %s, %d targets, complete", line, id, n)
		case row.Type == "worker" && row.Name != "w1":
			t.Errorf("status -o jsonl: worker line %q, want w1", line)
		}
	}
	if types["sweep"] != 1 || types["worker"] != 1 || len(types) != 2 {
		t.Errorf("status -o jsonl: lines by type %v, want one sweep and one worker:\n%s", types, st.stdout)
	}
}

// Attach's usage errors exit 2 before any connection, and say the form.
func TestAttachUsage(t *testing.T) {
	t.Parallel()
	const url = "nats://127.0.0.1:1" // never dialled: these are usage errors
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"attach"}, "want one sweep id (fanout attach [--server URL] SWEEP), got 0 arguments"},
		{[]string{"attach", url, "a", "b"}, "got 3 arguments"},
		{[]string{"attach", url}, `attach nats://127.0.0.1:1: that is a server URL: give the sweep id too (fanout attach --server URL SWEEP)`},
		{[]string{"attach", "--server", url, url, "abc"}, "two servers: give only --server URL SWEEP"},
		{[]string{"attach", "--server", url, "a/b"}, `sweep id "a/b": want letters, digits, - and _`},
		{[]string{"status", "--server", url, "-o", "csv"}, `--output "csv": want text, json or jsonl`},
	}
	for _, tt := range tests {
		r := fanout(t, "", tt.args...)
		if r.code != 2 || !strings.Contains(r.stderr, tt.want) || strings.Contains(r.stderr, "connect") {
			t.Errorf("%s: exit %d, stderr %q; want exit 2 and %q", strings.Join(tt.args, " "), r.code, r.stderr, tt.want)
		}
	}
}
