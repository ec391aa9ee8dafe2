package cli_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/fanout/fanout/internal/lab"
	"github.com/fanout/fanout/job"
	"github.com/fanout/fanout/store"
)

// TestTargetsJobTakes: a port or user given to a job that does not take
// it is a usage error that says what the job takes, before anything runs;
// the jobs that take them use them.
func TestTargetsJobTakes(t *testing.T) {
	t.Parallel()
	accepted := make(chan struct{}, 100)
	port := strconv.Itoa(lab.Port(lab.ClosingListenerFunc(t, "127.0.0.1:0", func() { accepted <- struct{}{} })))
	ran := t.TempDir()
	mark := []string{"--", "touch", ran + "/{index}"}
	const are = "(targets are hosts, addresses, CIDRs, ranges, node-sets)"
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"ping", "127.0.0.1", "[::1]:2222"}, `parse "[::1]:2222": ping takes no port ` + are},
		{[]string{"ping", "127.0.0.1:" + port}, `ping takes no port ` + are},
		{[]string{"ping", "root@127.0.0.1"}, `parse "root@127.0.0.1": ping takes no user ` + are},
		{[]string{"tcp", "-p", port, "127.0.0.1:" + port}, `parse "127.0.0.1:` + port + `": tcp takes no port: its ports come from -p ` + are},
		{[]string{"tcp", "-p", port, "root@127.0.0.1"}, `tcp takes no user: its ports come from -p ` + are},
		{append([]string{"exec", "root@127.0.0.1"}, mark...), `parse "root@127.0.0.1": exec takes no user ` + are},
		{[]string{"tcp", "-p", port, "fe80::%lo/64"}, `parse "fe80::%lo/64": a CIDR takes no zone: %lo names the interface of one address, as in fe80::1%lo; give fe80::/64`},
	} {
		r := fanout(t, "", tt.args...)
		if r.code != 2 || !strings.Contains(r.stderr, tt.want) {
			t.Errorf("fanout %q: exit %d, stderr %q; want 2 and %q", tt.args, r.code, r.stderr, tt.want)
		}
	}
	if len(accepted) > 0 {
		t.Errorf("%d connections accepted: a refused target list sent traffic", len(accepted))
	}
	if files, _ := os.ReadDir(ran); len(files) > 0 {
		t.Errorf("exec ran %d commands for a refused target list", len(files))
	}

	// exec takes a port: {port} is the target's.
	r := fanout(t, "", "exec", "-o", "jsonl", "127.0.0.1:8080", "localhost:22", "--", "echo", "{port}")
	if r.code != 0 {
		t.Fatalf("exec with ports: exit %d, stderr %s", r.code, r.stderr)
	}
	var out []string
	for _, res := range results(t, r.stdout) {
		out = append(out, fmt.Sprintf("%s %d %s", res.Host, res.Port, strings.TrimSpace(string(res.Stdout))))
	}
	slices.Sort(out)
	if want := []string{"127.0.0.1 8080 8080", "localhost 22 22"}; !slices.Equal(out, want) {
		t.Errorf("exec with ports: %q, want %q", out, want)
	}
}

// TestSSHTargetUserAndPort: ssh takes user@host:port, the port in place of
// -p (none is given here: only the target's port reaches the fleet).
func TestSSHTargetUserAndPort(t *testing.T) {
	t.Parallel()
	flags, _ := sshFleet(t)
	i := slices.Index(flags, "-p")
	port := flags[i+1]
	flags = slices.Delete(flags, i, i+2)
	r := fanout(t, "", append(flags, "root@127.2.0.[1-3]:"+port, "--", "hostname")...)
	if r.code != 0 {
		t.Fatalf("exit %d, stderr %s", r.code, r.stderr)
	}
	for i := 1; i <= 3; i++ {
		if line := fmt.Sprintf("127.2.0.%d: 127.2.0.%d\n", i, i); !strings.Contains(r.stdout, line) {
			t.Errorf("stdout lacks %q:\n%s", line, r.stdout)
		}
	}
}

// interruptAt runs fanout with stdin and sends it SIGINT once it has
// printed at lines; it returns the exit code and stderr.
func interruptAt(t *testing.T, at int, stdin string, args ...string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), commandTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, fanoutBin(t), args...)
	cmd.Stdin = strings.NewReader(stdin)
	var errb bytes.Buffer
	cmd.Stderr = &errb
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64<<10)
	lines := 0
	for {
		n, rerr := out.Read(buf)
		if lines += bytes.Count(buf[:n], []byte("\n")); at > 0 && lines >= at {
			cmd.Process.Signal(syscall.SIGINT)
			at = 0
		}
		if rerr != nil {
			break
		}
	}
	err = cmd.Wait()
	if ctx.Err() != nil {
		t.Fatalf("fanout %q: still running after %v", args, commandTimeout)
	}
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode(), errb.String()
	}
	return 0, errb.String()
}

// TestResumeListFromStore: a sweep of @FILE or - with --db stores the list
// once, beside the spec and not in it, and resume parses that copy: the
// file can change or go, standard input is not read again, and every
// target of the first run's list gets exactly one Result.
func TestResumeListFromStore(t *testing.T) {
	t.Parallel()
	const n = 120
	var list strings.Builder
	var want []string
	for i := 0; i < n; i++ {
		if i%2 == 0 {
			fmt.Fprintf(&list, "h%03d.localhost\n", i)
			want = append(want, fmt.Sprintf("h%03d.localhost", i))
		} else {
			fmt.Fprintf(&list, "127.0.%d.%d # an address\n", i/100, i%100)
			want = append(want, fmt.Sprintf("127.0.%d.%d", i/100, i%100))
		}
	}
	slices.Sort(want)
	for _, source := range []string{"file", "stdin"} {
		t.Run(source, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			db := filepath.Join(dir, "sweeps.db")
			hosts := filepath.Join(dir, "hosts.txt")
			if err := os.WriteFile(hosts, []byte("\xef\xbb\xbf"+list.String()), 0o644); err != nil {
				t.Fatal(err)
			}
			spec, stdin := "@"+hosts, ""
			if source == "stdin" {
				spec, stdin = "-", list.String()
			}
			code, stderr := interruptAt(t, 10, stdin, "exec", "--db", db, "-c", "1", "-q", "-o", "jsonl", spec, "--", "sh", "-c", "sleep 0.02")
			if code != 130 {
				t.Fatalf("first run: exit %d, want 130; stderr %s", code, stderr)
			}
			// The list the sweep read is in the store, the file is not needed.
			if err := os.WriteFile(hosts, []byte("other.localhost\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			st, err := store.OpenExisting(db)
			if err != nil {
				t.Fatal(err)
			}
			sw, err := st.Sweep(1)
			st.Close()
			if err != nil {
				t.Fatal(err)
			}
			if len(sw.Spec.Targets) != 1 || sw.Spec.Targets[0] != spec || sw.Total != n {
				t.Fatalf("stored spec targets %q, total %d; want [%s] and %d", sw.Spec.Targets, sw.Total, spec, n)
			}
			before := doneCount(t, db)
			if before == 0 || before >= n {
				t.Fatalf("%d results after the interrupt, want some but not all %d", before, n)
			}
			r := fanout(t, "", "resume", db, "-q", "-o", "jsonl")
			if r.code != 0 {
				t.Fatalf("resume: exit %d, stderr %s", r.code, r.stderr)
			}
			if got := len(results(t, r.stdout)); uint64(got) != n-before {
				t.Errorf("resume ran %d targets, want the %d left", got, n-before)
			}
			st, err = store.OpenExisting(db)
			if err != nil {
				t.Fatal(err)
			}
			defer st.Close()
			var hostsDone []string
			seen := map[uint64]int{}
			if err := st.Results(context.Background(), 1, store.Query{}, func(r job.Result) error {
				hostsDone = append(hostsDone, r.Host)
				seen[r.Index]++
				return nil
			}); err != nil {
				t.Fatal(err)
			}
			slices.Sort(hostsDone)
			if !slices.Equal(hostsDone, want) || len(seen) != n {
				t.Errorf("results for %d indexes, hosts %q\nwant %q", len(seen), hostsDone, want)
			}
		})
	}
}

// TestListsLeaveNothingBehind: the copies --db takes of the lists as they
// are read leave nothing beside the database.
func TestListsLeaveNothingBehind(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	hosts := filepath.Join(dir, "hosts.txt")
	os.WriteFile(hosts, []byte("127.0.0.1\nlocalhost\n"), 0o644)
	db := filepath.Join(dir, "s.db")
	r := fanout(t, "127.0.0.2\n", "exec", "--db", db, "-q", "@"+hosts, "-", "--", "true")
	if r.code != 0 {
		t.Fatalf("exit %d, stderr %s", r.code, r.stderr)
	}
	files, _ := os.ReadDir(dir)
	for _, f := range files {
		if strings.HasPrefix(f.Name(), ".fanout-list-") {
			t.Errorf("left behind: %s", f.Name())
		}
	}
}
