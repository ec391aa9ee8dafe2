package lab

import (
	"context"
	"errors"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fanout/fanout/internal/testwait"
)

func TestMain(m *testing.M) { Main(m) }

// TestLabNamespace proves the process really runs in the namespace Main made.
func TestLabNamespace(t *testing.T) {
	Require(t)
	out, err := exec.Command("ip", "netns", "identify", strconv.Itoa(os.Getpid())).Output()
	if err != nil {
		t.Fatalf("ip netns identify: %v", err)
	}
	if got := strings.TrimSpace(string(out)); got != Name() {
		t.Fatalf("running in namespace %q, FANOUT_LAB says %q", got, Name())
	}
	b, err := os.ReadFile("/proc/sys/net/ipv4/ping_group_range")
	if err != nil {
		t.Fatal(err)
	}
	if f := strings.Fields(string(b)); len(f) != 2 || f[0] != "0" || f[1] != "2147483647" {
		t.Fatalf("ping_group_range = %q, want 0 2147483647", b)
	}
}

func TestLabTCP(t *testing.T) {
	Require(t)
	t.Parallel()
	// Listening on every address: each live 127.x answers, as the design says.
	port := strconv.Itoa(Port(ClosingListener(t, "0.0.0.0:0"))) // closed at the end of the test: parallel subtests run after return
	tests := []struct {
		addr string
		want string // "up", "refused", "timeout"
	}{
		{"127.0.5.6:" + port, "up"},
		{"127.0.2.3:1", "refused"},
		{"127.1.2.3:80", "timeout"},
		{"127.1.255.254:" + port, "timeout"}, // dead even where something listens
	}
	for _, tc := range tests {
		t.Run(tc.addr, func(t *testing.T) {
			t.Parallel()
			// A timeout only where one is expected: an answer may be
			// slow to be read on a loaded machine, not wrong.
			d := net.Dialer{Timeout: testwait.Hang}
			if tc.want == "timeout" {
				d.Timeout = 500 * time.Millisecond
			}
			c, err := d.DialContext(context.Background(), "tcp4", tc.addr)
			got := "up"
			var ne net.Error
			switch {
			case err == nil:
				c.Close()
			case errors.Is(err, syscall.ECONNREFUSED):
				got = "refused"
			case errors.As(err, &ne) && ne.Timeout():
				got = "timeout"
			default:
				got = err.Error()
			}
			if got != tc.want {
				t.Fatalf("dial %s: got %s, want %s", tc.addr, got, tc.want)
			}
		})
	}
}

func TestLabPing(t *testing.T) {
	Require(t)
	if _, err := exec.LookPath("ping"); err != nil {
		t.Skip("ping not installed (apt-get install -y iputils-ping)")
	}
	t.Parallel()
	tests := []struct {
		addr  string
		alive bool
	}{
		{"127.0.0.9", true},
		{"127.0.200.1", true},
		{"127.1.0.1", false},
	}
	for _, tc := range tests {
		t.Run(tc.addr, func(t *testing.T) {
			t.Parallel()
			out, err := exec.Command("ping", "-n", "-c1", "-W1", tc.addr).CombinedOutput()
			if alive := err == nil; alive != tc.alive {
				t.Fatalf("ping %s: alive=%v, want %v\n%s", tc.addr, alive, tc.alive, out)
			}
			// A dead host is silent, not an error of ours (input hook, no EPERM).
			if strings.Contains(string(out), "not permitted") {
				t.Fatalf("ping %s saw a local error:\n%s", tc.addr, out)
			}
		})
	}
}

// TestCreateExecDestroy builds a second namespace by hand: exit codes come
// back through execIn, and Destroy leaves nothing behind.
func TestCreateExecDestroy(t *testing.T) {
	if ok, why := Available(); !ok {
		t.Skip(skipReason + ": " + why)
	}
	name := NamePrefix + "t" + strconv.Itoa(os.Getpid())
	if err := Create(name); err != nil {
		_ = Destroy(name)
		t.Fatalf("Create: %v", err)
	}
	t.Cleanup(func() { _ = Destroy(name) })
	if code := execIn(name, "/bin/sh", []string{"-c", `test "$FANOUT_LAB" = ` + name + ` && exit 7`}); code != 7 {
		t.Fatalf("execIn exit code = %d, want 7", code)
	}
	if code := execIn(name, "/bin/sh", []string{"-c", "kill -TERM $$"}); code != 128+int(syscall.SIGTERM) {
		t.Fatalf("execIn killed child: code = %d, want %d", code, 128+int(syscall.SIGTERM))
	}
	if err := Destroy(name); err != nil {
		t.Fatalf("Destroy: %v", err)
	}
	out, _ := exec.Command("ip", "netns", "list").Output()
	if strings.Contains(string(out), name) {
		t.Fatalf("namespace %s still listed after Destroy:\n%s", name, out)
	}
}

// TestHelperProcess is the test binary run by TestMainLifecycle, not a test.
func TestHelperProcess(t *testing.T) {
	switch os.Getenv("LAB_HELPER") {
	case "":
		t.Skip("helper for TestMainLifecycle")
	case "pass":
		Require(t)
	case "fail":
		t.Fatal("failing on purpose")
	case "hang":
		time.Sleep(2 * testwait.Hang) // only the SIGTERM ends it
	}
}

// TestMainLifecycle runs this test binary through Main from outside the lab:
// the exit code comes back and the namespace is gone afterwards, whether the
// tests pass, fail or the run is killed.
func TestMainLifecycle(t *testing.T) {
	if ok, why := Available(); !ok {
		t.Skip(skipReason + ": " + why)
	}
	t.Parallel()
	tests := []struct {
		mode string
		want int // exit code; -1: any non-zero
	}{
		{"pass", 0},
		{"fail", 1},
		{"hang", -1}, // SIGTERM to the outer process
	}
	for _, tc := range tests {
		t.Run(tc.mode, func(t *testing.T) {
			t.Parallel()
			cmd := exec.Command(os.Args[0], "-test.run=^TestHelperProcess$", "-test.v")
			var env []string
			for _, e := range os.Environ() {
				if !strings.HasPrefix(e, EnvVar+"=") {
					env = append(env, e) // from outside the lab, as a fresh go test
				}
			}
			cmd.Env = append(env, "LAB_HELPER="+tc.mode)
			out := new(SyncBuffer)
			cmd.Stdout, cmd.Stderr = out, out
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			name := NamePrefix + strconv.Itoa(cmd.Process.Pid)
			if tc.mode == "hang" {
				// Wait until the child is inside the lab, then stop the run.
				testwait.For(t, "the helper to run inside the lab", func() bool { return strings.Contains(out.String(), "=== RUN") })
				_ = cmd.Process.Signal(syscall.SIGTERM)
			}
			err := cmd.Wait()
			code := cmd.ProcessState.ExitCode()
			if tc.want >= 0 && code != tc.want || tc.want < 0 && err == nil {
				t.Fatalf("exit code %d (%v), want %d\n%s", code, err, tc.want, out.String())
			}
			if tc.mode == "pass" && !strings.Contains(out.String(), "--- PASS: TestHelperProcess") {
				t.Fatalf("helper did not run inside the lab:\n%s", out.String())
			}
			list, _ := exec.Command("ip", "netns", "list").Output()
			if strings.Contains(string(list), name) {
				t.Fatalf("namespace %s left behind:\n%s", name, list)
			}
		})
	}
}
