package output

import (
	"bytes"
	"testing"

	"github.com/fanout/fanout/job"
)

func exitCode(n int) *int { return &n }

func TestInline(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name           string
		r              job.Result
		stdout, stderr string
	}{
		{"lines prefixed", job.Result{Host: "web01", Status: job.Up, Stdout: []byte("a\nb\n")}, "web01: a\nweb01: b\n", ""},
		{"last line ended", job.Result{Host: "web01", Status: job.Up, Stdout: []byte("no newline")}, "web01: no newline\n", ""},
		{"empty line kept", job.Result{Host: "h", Status: job.Up, Stdout: []byte("\n\nx\n")}, "h: \nh: \nh: x\n", ""},
		{"stderr apart", job.Result{Host: "h", Status: job.Up, Stdout: []byte("out\n"), Stderr: []byte("err\n")}, "h: out\n", "h: err\n"},
		{"exit noted", job.Result{Host: "h", Status: job.Down, Class: job.ClassExit, ExitCode: exitCode(3), Error: "exit status 3"}, "", "h: [fanout] exit status 3\n"},
		{"failure noted", job.Result{Host: "h", Status: job.Error, Class: job.ClassAuth, Error: "no key accepted"}, "", "h: [fanout] auth: no key accepted\n"},
		{"truncated noted", job.Result{Host: "h", Status: job.Up, Stdout: []byte("xx"), Truncated: true}, "h: xx\n", "h: [fanout] output truncated\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			in := NewInline(&out, &errb)
			if err := in.Write(tt.r); err != nil {
				t.Fatal(err)
			}
			if err := in.Close(); err != nil {
				t.Fatal(err)
			}
			if out.String() != tt.stdout || errb.String() != tt.stderr {
				t.Errorf("stdout %q stderr %q, want %q and %q", out.String(), errb.String(), tt.stdout, tt.stderr)
			}
		})
	}
}

func TestInlineOneStream(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	in := NewInline(&out, nil)
	in.Write(job.Result{Host: "a", Status: job.Up, Stdout: []byte("1\n"), Stderr: []byte("2\n")})
	in.Write(job.Result{Host: "b", Status: job.Down, Class: job.ClassTimeout, Error: "command timed out after 1s"})
	in.Close()
	want := "a: 1\na: 2\nb: [fanout] timeout: command timed out after 1s\n"
	if out.String() != want {
		t.Errorf("got %q, want %q", out.String(), want)
	}
}
