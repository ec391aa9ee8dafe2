package cli_test

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
)

// TestUsageErrors: every bad input exits 2 with "fanout: <message naming the
// input>" and a hint, and nothing is run: the exec job would create a file
// per target in ran/, the tcp job would be accepted by the listener.
func TestUsageErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ran := filepath.Join(dir, "ran")
	if err := os.Mkdir(ran, 0o755); err != nil {
		t.Fatal(err)
	}
	mark := []string{"--", "touch", ran + "/{}"}
	hosts := filepath.Join(dir, "hosts.txt")
	if err := os.WriteFile(hosts, []byte("# none but a comment\n\n"), 0o644); err != nil {
		t.Fatal(err)
	}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var accepted atomic.Int64
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			c.Close()
		}
	}()
	port := strings.TrimPrefix(ln.Addr().String(), "127.0.0.1:")
	db := filepath.Join(dir, "never.db") // no usage error may create it

	cases := []struct {
		name  string
		args  []string
		stdin string
		want  []string // substrings of stderr
	}{
		{"unknown job", []string{"bogusjob", "127.0.0.1"}, "", []string{"bogusjob"}},
		{"unknown flag", append([]string{"exec", "--bogus-flag", "127.0.0.1"}, mark...), "", []string{"--bogus-flag"}},
		{"octet out of range", append([]string{"exec", "127.0.0.300/24"}, mark...), "", []string{"127.0.0.300/24"}},
		{"reversed range", append([]string{"exec", "127.0.0.9-3"}, mark...), "", []string{"127.0.0.9-3"}},
		{"bad prefix", append([]string{"exec", "127.0.0.0/33"}, mark...), "", []string{"127.0.0.0/33"}},
		{"missing file", append([]string{"exec", "@" + dir + "/no-such-file"}, mark...), "", []string{"no-such-file"}},
		{"empty file", append([]string{"exec", "@" + hosts}, mark...), "", []string{"no targets"}},
		{"empty stdin", append([]string{"exec", "-"}, mark...), "\n# nothing\n", []string{"no targets"}},
		{"no targets", append([]string{"exec"}, mark...), "", []string{"no targets"}},
		{"all excluded", append([]string{"exec", "127.0.0.1-2", "--exclude", "127.0.0.0/30"}, mark...), "", []string{"no targets"}},
		{"over --max-targets", append([]string{"exec", "--max-targets", "100", "127.0.0.0/24"}, mark...), "", []string{"256", "--max-targets"}},
		{"over the default limit", append([]string{"exec", "127.0.0.0/7"}, mark...), "", []string{"33554432", "--max-targets"}},
		{"huge ipv6", append([]string{"exec", "::/64"}, mark...), "", []string{"::/64", "--allow-huge"}},
		{"bad exclude", append([]string{"exec", "127.0.0.1", "--exclude", "127.0.0.999"}, mark...), "", []string{"127.0.0.999"}},
		{"bad shard", append([]string{"exec", "--shard", "4/3", "127.0.0.1"}, mark...), "", []string{"4/3"}},
		{"zero shard", append([]string{"exec", "--shard", "0/3", "127.0.0.1"}, mark...), "", []string{"0/3"}},
		{"bad output", append([]string{"exec", "-o", "xml", "127.0.0.1"}, mark...), "", []string{"xml"}},
		{"bad progress", append([]string{"exec", "--progress", "sometimes", "127.0.0.1"}, mark...), "", []string{"sometimes"}},
		{"bad concurrency", append([]string{"exec", "-c", "0", "127.0.0.1"}, mark...), "", []string{"concurrency"}},
		{"stdin twice", append([]string{"exec", "-", "--exclude", "-"}, mark...), "127.0.0.1\n", []string{`"-"`}},
		{"exec without command", []string{"exec", "127.0.0.1"}, "", []string{"no command"}},
		{"exec with empty command", []string{"exec", "127.0.0.1", "--"}, "", []string{"no command"}},
		{"exec command not found", []string{"exec", "127.0.0.1", "--", "no-such-command-fanout", "{}"}, "", []string{"no-such-command-fanout"}},
		{"tcp without ports", []string{"tcp", "127.0.0.1"}, "", []string{"-p"}},
		{"tcp port out of range", []string{"tcp", "-p", port + ",70000", "127.0.0.1"}, "", []string{"70000"}},
		{"tcp port zero", []string{"tcp", "-p", "0", "127.0.0.1"}, "", []string{`0`}},
		{"tcp port garbage", []string{"tcp", "-p", "http", "127.0.0.1"}, "", []string{"http"}},
		{"tcp bad range", []string{"tcp", "-p", "90-80", "127.0.0.1"}, "", []string{"90-80"}},
		{"tcp bad target", []string{"tcp", "-p", port, "127.0.0.256"}, "", []string{"127.0.0.256"}},
		// Numeric flags: NaN and infinities are refused like any bad number
		// (ping used to panic, --db to fail after creating its file).
		{"ping rate NaN", []string{"ping", "--rate", "NaN", "127.0.0.1"}, "", []string{"--rate NaN", "want"}},
		{"ping rate Inf", []string{"ping", "--rate", "Inf", "127.0.0.1"}, "", []string{"--rate Inf", "want"}},
		{"exec rate NaN with db", append([]string{"exec", "--rate", "NaN", "--db", db, "127.0.0.1"}, mark...), "", []string{"--rate NaN"}},
		{"tcp rate -Inf", []string{"tcp", "-p", port, "--rate=-Inf", "127.0.0.1"}, "", []string{"--rate -Inf"}},
		{"tcp rate 1e400", []string{"tcp", "-p", port, "--rate", "1e400", "127.0.0.1"}, "", []string{"--rate 1e400"}},
		{"tcp rate negative", []string{"tcp", "-p", port, "--rate=-5", "127.0.0.1"}, "", []string{"--rate -5"}},
		{"tcp negative timeout", []string{"tcp", "-p", port, "--timeout=-1s", "127.0.0.1"}, "", []string{"--timeout -1s"}},
		{"tcp huge concurrency", []string{"tcp", "-p", port, "-c", "99999999999999999999", "127.0.0.1"}, "", []string{"--concurrency"}},
		{"tcp empty retries", []string{"tcp", "-p", port, "--retries=", "127.0.0.1"}, "", []string{"--retries"}},
		{"exec max-output 0", append([]string{"exec", "--max-output", "0", "127.0.0.1"}, mark...), "", []string{"--max-output 0"}},
		// Contradictory and unused flags.
		{"tcp alive and dead", []string{"tcp", "-p", port, "--alive", "--dead", "127.0.0.1"}, "", []string{"--alive and --dead"}},
		{"exec seed without shuffle", append([]string{"exec", "--seed", "3", "127.0.0.1"}, mark...), "", []string{"--seed needs --shuffle"}},
		{"detach without server", append([]string{"exec", "--detach", "--db", db, "127.0.0.1"}, mark...), "", []string{"--detach needs --server"}},
		{"ping retries", []string{"ping", "--retries", "2", "127.0.0.1"}, "", []string{"--retries", "--count"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := fanout(t, tc.stdin, tc.args...)
			if r.code != 2 {
				t.Fatalf("fanout %q: exit %d, want 2\nstdout: %s\nstderr: %s", tc.args, r.code, r.stdout, r.stderr)
			}
			if !strings.HasPrefix(r.stderr, "fanout: ") {
				t.Errorf("stderr does not start with \"fanout: \":\n%s", r.stderr)
			}
			for _, w := range tc.want {
				if !strings.Contains(r.stderr, w) {
					t.Errorf("stderr does not name %q:\n%s", w, r.stderr)
				}
			}
			if !strings.Contains(r.stderr, "--help") {
				t.Errorf("stderr has no hint:\n%s", r.stderr)
			}
			if r.stdout != "" {
				t.Errorf("stdout not empty:\n%s", r.stdout)
			}
		})
	}
	t.Cleanup(func() {
		if ents, _ := os.ReadDir(ran); len(ents) != 0 {
			t.Errorf("a usage error still ran the job: %d files in %s", len(ents), ran)
		}
		if n := accepted.Load(); n != 0 {
			t.Errorf("a usage error still connected: %d connections", n)
		}
		if _, err := os.Stat(db); err == nil {
			t.Errorf("a usage error still created --db %s", db)
		}
	})
}

func TestHelpAndVersion(t *testing.T) {
	t.Parallel()
	cases := []struct {
		args   []string
		code   int
		stdout string // substring, "" = must be empty
		stderr string
	}{
		{[]string{}, 2, "", "Usage:"},
		{[]string{"--help"}, 0, "Usage:", ""},
		{[]string{"help"}, 0, "Usage:", ""},
		{[]string{"exec", "--help"}, 0, "--max-output", ""},
		{[]string{"tcp", "--help"}, 0, "--ports", ""},
		{[]string{"version"}, 0, "fanout ", ""},
	}
	for _, tc := range cases {
		t.Run(strings.Join(append([]string{"fanout"}, tc.args...), " "), func(t *testing.T) {
			t.Parallel()
			r := fanout(t, "", tc.args...)
			if r.code != tc.code {
				t.Errorf("exit %d, want %d\nstderr: %s", r.code, tc.code, r.stderr)
			}
			if tc.stdout == "" && r.stdout != "" {
				t.Errorf("stdout not empty:\n%s", r.stdout)
			}
			if !strings.Contains(r.stdout, tc.stdout) {
				t.Errorf("stdout lacks %q:\n%s", tc.stdout, r.stdout)
			}
			if !strings.Contains(r.stderr, tc.stderr) {
				t.Errorf("stderr lacks %q:\n%s", tc.stderr, r.stderr)
			}
		})
	}
}
