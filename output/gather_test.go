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
		box("web[08-09] (2) [exit status 3]") + "hello world\n" +
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

// A host's name or address in a message becomes HOST only as a whole word:
// short names (a, web) no longer garble the words that contain them.
func TestGatherMarksWholeWords(t *testing.T) {
	t.Parallel()
	tests := []struct{ host, addr, msg, want string }{
		{"web", "", "dial tcp web:22: connect: connection refused", "dial tcp HOST:22: connect: connection refused"},
		{"web", "", "lookup webserver: no such host web", "lookup webserver: no such host HOST"},
		{"web", "", "web.example.com is not web", "web.example.com is not HOST"},
		{"web", "", "x.web, web-1, web_2, web.", "x.web, web-1, web_2, HOST."},
		{"a", "", "a: ssh: handshake failed: a bad key", "HOST: ssh: handshake failed: HOST bad key"},
		{"a", "", "lookup a.b on 127.0.0.53:53: no such host", "lookup a.b on 127.0.0.53:53: no such host"},
		{"h", "127.0.0.1", "dial tcp 127.0.0.1:22 (h): refused; 127.0.0.12 too", "dial tcp HOST:22 (HOST): refused; 127.0.0.12 too"},
		{"10.0.0.1", "10.0.0.1", "10.0.0.1 and 10.0.0.10 and 110.0.0.1", "HOST and 10.0.0.10 and 110.0.0.1"},
		{"fd00::1", "fd00::1", "dial [fd00::1]:22, not fd00::1:5 or fd00::12", "dial [HOST]:22, not fd00::1:5 or fd00::12"},
	}
	for _, tt := range tests {
		var out bytes.Buffer
		g := NewGather(&out)
		g.Write(job.Result{Host: tt.host, Addr: tt.addr, Status: job.Down, Class: job.ClassRefused, Error: tt.msg})
		g.Close()
		if !strings.Contains(out.String(), "[refused: "+tt.want+"]") {
			t.Errorf("host %q, message %q:\n got %q\nwant [refused: %s]", tt.host, tt.msg, out.String(), tt.want)
		}
	}
}
