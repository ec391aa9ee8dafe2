package output

import (
	"bytes"
	"fmt"
	"strings"
	"testing"

	"github.com/fanout/fanout/job"
)

func TestGatherGroupsIdenticalOutputs(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	g := NewGather(&out)
	for i := 1; i <= 20; i++ {
		r := job.Result{Index: uint64(i), Host: fmt.Sprintf("web%02d", i), Status: job.Up, Stdout: []byte("hello world\n")}
		switch i {
		case 7:
			r.Stdout = []byte("other\n")
		case 8, 9:
			r.Status, r.Class, r.ExitCode, r.Error = job.Down, job.ClassExit, exitCode(3), "exit status 3"
		case 12:
			r.Status, r.Class, r.Stdout, r.Error = job.Down, job.ClassRefused, nil, "dial tcp web12:22: connect: connection refused"
		case 13:
			r.Status, r.Class, r.Stdout, r.Error = job.Down, job.ClassRefused, nil, "dial tcp web13:22: connect: connection refused"
		}
		if err := g.Write(r); err != nil {
			t.Fatal(err)
		}
	}
	if err := g.Close(); err != nil {
		t.Fatal(err)
	}
	want := box("web[01-06,10-11,14-20] (15)") + "hello world\n" +
		box("web07 (1)") + "other\n" +
		box("web[08-09] (2) [exit 3]") + "hello world\n" +
		box("web[12-13] (2) [refused: dial tcp HOST:22: connect: connection refused]")
	if out.String() != want {
		t.Errorf("got\n%s\nwant\n%s", out.String(), want)
	}
}

func TestGatherTruncatedApart(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	g := NewGather(&out)
	g.Write(job.Result{Index: 0, Host: "a1", Status: job.Up, Stdout: []byte("x")})
	g.Write(job.Result{Index: 1, Host: "a2", Status: job.Up, Stdout: []byte("x"), Truncated: true})
	g.Close()
	want := box("a1 (1)") + "x\n" + box("a2 (1) [truncated]") + "x\n"
	if out.String() != want {
		t.Errorf("got %q, want %q", out.String(), want)
	}
}

// box is a group header: the host line between two rules of its length.
func box(head string) string {
	rule := strings.Repeat("-", len(head))
	return rule + "\n" + head + "\n" + rule + "\n"
}
