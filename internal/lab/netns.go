// Package lab builds the test network and simulated fleets that tests and
// benchmarks run against, so nothing ever leaves loopback.
//
// The lab network is a fresh network namespace whose loopback answers on
// 127.0.0.0/16 (Live) like every host of a subnet, while 127.1.0.0/16 (Dead)
// is silent: nftables drops ICMP echo requests and TCP SYNs to it on the input
// hook, so probes leave normally (no EPERM) and are never answered. A port
// with no listener on a live address is refused. Together: up, down,
// refused and timeout targets on one machine.
//
// A package opts in with
//
//	func TestMain(m *testing.M) { lab.Main(m) }
//
// and its tests that need the lab call lab.Require(t).
package lab

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

const (
	// EnvVar names the lab namespace a process runs inside; unset outside.
	EnvVar = "FANOUT_LAB"
	// EnvDisable, when non-empty, makes Main run the tests outside the lab.
	EnvDisable = "FANOUT_NOLAB"
	// Live answers ICMP echo and TCP (refused where nothing listens).
	Live = "127.0.0.0/16"
	// Dead drops ICMP echo requests and TCP SYNs: every probe times out.
	Dead = "127.1.0.0/16"
	// NamePrefix starts the name of every namespace Main creates.
	NamePrefix = "fanout-lab-"
)

// Rules is the nftables ruleset loaded into the namespace. The input hook,
// not output: an output drop fails the sender's sendto with EPERM, which a
// dead host never does.
const Rules = `table inet fanoutlab {
	chain input {
		type filter hook input priority 0; policy accept;
		ip daddr 127.1.0.0/16 icmp type echo-request drop
		ip daddr 127.1.0.0/16 tcp flags & (syn | ack) == syn drop
	}
}
`

// skipReason is why Require skips outside the lab.
const skipReason = "needs root, ip and nft to build the lab namespace"

// InLab reports whether this process runs inside a lab namespace.
func InLab() bool { return os.Getenv(EnvVar) != "" }

// Name is the lab namespace this process runs in, or "".
func Name() string { return os.Getenv(EnvVar) }

// Require skips t unless it runs inside the lab namespace.
func Require(t testing.TB) {
	t.Helper()
	if !InLab() {
		t.Skip(skipReason + " (run as root with iproute2 and nftables; lab.Main does the rest)")
	}
}

// Available reports whether this process can build a lab namespace, and why
// not when it cannot.
func Available() (bool, string) {
	if os.Geteuid() != 0 {
		return false, "not root"
	}
	for _, tool := range []string{"ip", "nft"} {
		if _, err := exec.LookPath(tool); err != nil {
			return false, tool + " not found"
		}
	}
	return true, ""
}

// Main is a package's TestMain: when it can, it builds a fresh namespace,
// re-executes the test binary inside it with the same arguments, removes the
// namespace and exits with the child's code. Otherwise (not root, tools
// missing, already inside, FANOUT_NOLAB set) it runs the tests here, where
// Require skips the lab tests.
//
// Tests under Main never query DNS (see NoDNS).
func Main(m *testing.M) {
	NoDNS()
	os.Exit(mainCode(m))
}

func mainCode(m *testing.M) int {
	if InLab() || os.Getenv(EnvDisable) != "" {
		return m.Run()
	}
	if ok, why := Available(); !ok {
		fmt.Fprintf(os.Stderr, "lab: %s; lab tests will skip\n", why)
		return m.Run()
	}
	removeStale()
	name := NamePrefix + strconv.Itoa(os.Getpid())
	if err := Create(name); err != nil {
		_ = Destroy(name)
		fmt.Fprintf(os.Stderr, "lab: %v; lab tests will skip\n", err)
		return m.Run()
	}
	defer func() { _ = Destroy(name) }()
	// Resolve our own path here: /proc/self/exe seen by ip would be ip.
	self, err := os.Executable()
	if err != nil {
		fmt.Fprintf(os.Stderr, "lab: %v\n", err)
		return 1
	}
	return execIn(name, self, os.Args[1:])
}

// execIn runs path with args inside namespace name, forwarding signals, and
// returns its exit code.
func execIn(name, path string, args []string) int {
	cmd := exec.Command("ip", append([]string{"netns", "exec", name, path}, args...)...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.Env = append(os.Environ(), EnvVar+"="+name)
	// Catch signals so the namespace is removed after the child stops.
	sig := make(chan os.Signal, 4)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM, syscall.SIGQUIT)
	defer signal.Stop(sig)
	if err := cmd.Start(); err != nil {
		fmt.Fprintf(os.Stderr, "lab: start %s in %s: %v\n", path, name, err)
		return 1
	}
	done := make(chan struct{})
	go func() {
		for {
			select {
			case s := <-sig:
				_ = cmd.Process.Signal(s)
			case <-done:
				return
			}
		}
	}()
	err := cmd.Wait()
	close(done)
	if err == nil {
		return 0
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return 128 + int(ws.Signal())
		}
		return ee.ExitCode()
	}
	fmt.Fprintf(os.Stderr, "lab: %v\n", err)
	return 1
}

// Create builds namespace name: lo up, the Dead range silenced, unprivileged
// ICMP echo sockets allowed for every group.
func Create(name string) error {
	if err := run(nil, "ip", "netns", "add", name); err != nil {
		return err
	}
	if err := run(nil, "ip", "-n", name, "link", "set", "lo", "up"); err != nil {
		return err
	}
	if err := run(strings.NewReader(Rules), "ip", "netns", "exec", name, "nft", "-f", "-"); err != nil {
		return err
	}
	// ping_group_range is per namespace; written from inside it.
	return run(nil, "ip", "netns", "exec", name, "sh", "-c",
		"echo '0 2147483647' > /proc/sys/net/ipv4/ping_group_range")
}

// Destroy removes namespace name (its rules go with it).
func Destroy(name string) error {
	return run(nil, "ip", "netns", "del", name)
}

// removeStale deletes namespaces left by test binaries that were killed
// before they could clean up (their pid is gone).
func removeStale() {
	out, err := exec.Command("ip", "netns", "list").Output()
	if err != nil {
		return
	}
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || !strings.HasPrefix(f[0], NamePrefix) {
			continue
		}
		pid, err := strconv.Atoi(strings.TrimPrefix(f[0], NamePrefix))
		if err != nil || pid <= 0 {
			continue
		}
		if syscall.Kill(pid, 0) == syscall.ESRCH {
			_ = Destroy(f[0])
		}
	}
}

func run(stdin *strings.Reader, name string, args ...string) error {
	cmd := exec.Command(name, args...)
	if stdin != nil {
		cmd.Stdin = stdin
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}
