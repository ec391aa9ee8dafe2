package output_test

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fanout/fanout/job"
	"github.com/fanout/fanout/output"
)

func TestAppendSafe(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in          string
		line, lines string // escaped as one line, and with newlines kept
	}{
		{"plain ascii", "plain ascii", "plain ascii"},
		{"tab\tkept", "tab\tkept", "tab\tkept"},
		{"\x1b]0;pwned\x07", `\x1b]0;pwned\x07`, `\x1b]0;pwned\x07`},
		{"\x1b[2J\x1b[H", `\x1b[2J\x1b[H`, `\x1b[2J\x1b[H`},
		{"a\nb\n", `a\nb\n`, "a\nb\n"},
		{"crlf\r\nnext", `crlf\r\nnext`, "crlf\nnext"},
		{"over\rwrite", `over\rwrite`, `over\rwrite`},
		{"nul\x00 bs\x08 del\x7f", `nul\x00 bs\x08 del\x7f`, `nul\x00 bs\x08 del\x7f`},
		{"c1 csi \u009b2J", `c1 csi \u009b2J`, `c1 csi \u009b2J`},
		{"bad \xff\xfe utf8 \xe2\x82", `bad \xff\xfe utf8 \xe2\x82`, `bad \xff\xfe utf8 \xe2\x82`},
		{"bidi \u202egnp.exe", `bidi \u202egnp.exe`, `bidi \u202egnp.exe`},
		{"héllo wörld ✓ 日本 🙂", "héllo wörld ✓ 日本 🙂", "héllo wörld ✓ 日本 🙂"},
		{`a \x1b literal`, `a \x1b literal`, `a \x1b literal`},
	}
	for _, tt := range tests {
		if got := string(output.AppendSafe(nil, tt.in, false)); got != tt.line {
			t.Errorf("AppendSafe(%q, one line) = %q, want %q", tt.in, got, tt.line)
		}
		if got := output.Safe(tt.in); got != tt.line {
			t.Errorf("Safe(%q) = %q, want %q", tt.in, got, tt.line)
		}
		if got := output.SafeLines(tt.in); got != tt.lines {
			t.Errorf("SafeLines(%q) = %q, want %q", tt.in, got, tt.lines)
		}
	}
}

// hostile is what a malicious host can put in a Result: escape sequences
// that set the window title and clear the screen, in its output, its error
// message and its name (a name read from a file or the store).
var hostile = job.Result{
	Index: 1, Host: "evil\x1b[2Jhost", Job: "ssh", Status: job.Down, Class: job.ClassExit, ExitCode: intp(1),
	Start: t0, End: t0.Add(time.Millisecond),
	Stdout: []byte("title \x1b]0;pwned\x07\nclear \x1b[2J\tend\n"),
	Stderr: []byte("err \x1b[31mred\u009b\xff\n"),
	Error:  "exit status 1 \x1b]0;pwned\x07",
}

// terminalSafe fails when s holds a byte that can start a terminal control
// sequence: C0 controls but tab and newline, DEL, or an invalid UTF-8 byte.
func terminalSafe(t *testing.T, what, s string) {
	t.Helper()
	for _, r := range s {
		if (r < 0x20 && r != '\t' && r != '\n') || (r >= 0x7f && r < 0xa0) || r == 0xfffd {
			t.Errorf("%s: control character %U printed raw:\n%q", what, r, s)
			return
		}
	}
}

// TestTextWritersEscape: every writer that prints for a terminal escapes
// what the host sent; the machine formats and the files keep it raw.
func TestTextWritersEscape(t *testing.T) {
	t.Parallel()
	want := []string{`\x1b]0;pwned\x07`, `\x1b[2J`, `evil\x1b[2Jhost`}

	var text bytes.Buffer
	w, _ := output.New("text", &text, output.Filter{})
	w.Write(hostile)
	w.Close()
	terminalSafe(t, "text", text.String())
	for _, s := range []string{`\x1b[31mred`, `evil\x1b[2Jhost`} {
		if !strings.Contains(text.String(), s) {
			t.Errorf("text lacks %q:\n%s", s, text.String())
		}
	}

	var out, errb bytes.Buffer
	in := output.NewInline(&out, &errb)
	in.Write(hostile)
	in.Close()
	terminalSafe(t, "inline stdout", out.String())
	terminalSafe(t, "inline stderr", errb.String())
	for _, s := range want {
		if !strings.Contains(out.String(), s) {
			t.Errorf("inline stdout lacks %q:\n%s", s, out.String())
		}
	}
	if !strings.Contains(out.String(), "\tend\n") || !strings.Contains(errb.String(), `red\u009b\xff`) {
		t.Errorf("inline: tab or escaped C1 missing:\nstdout %q\nstderr %q", out.String(), errb.String())
	}

	var gathered bytes.Buffer
	g := output.NewGather(&gathered)
	g.Write(hostile)
	other := hostile
	other.Index, other.Host, other.Stdout, other.Stderr = 2, "web1", nil, nil
	other.Status, other.Class, other.ExitCode = job.Error, "auth\x1b[2J", nil
	g.Write(other)
	g.Close()
	terminalSafe(t, "gather", gathered.String())
	for _, s := range append(want, `[auth\x1b[2J: exit status 1 \x1b]0;pwned\x07]`) {
		if !strings.Contains(gathered.String(), s) {
			t.Errorf("gather lacks %q:\n%s", s, gathered.String())
		}
	}

	var sum bytes.Buffer
	s := output.NewSummary()
	s.Add(other)
	s.Print(&sum, time.Second, false, 0)
	terminalSafe(t, "summary", sum.String())
	if !strings.Contains(sum.String(), `auth\x1b[2J 1`) {
		t.Errorf("summary lacks the escaped class:\n%s", sum.String())
	}

	// jsonl: the JSON string decodes to the very bytes the host sent.
	var jl bytes.Buffer
	w, _ = output.New("jsonl", &jl, output.Filter{})
	w.Write(hostile)
	w.Close()
	var back job.Result
	if err := json.Unmarshal(jl.Bytes(), &back); err != nil {
		t.Fatalf("jsonl %q: %v", jl.String(), err)
	}
	if !bytes.Equal(back.Stdout, hostile.Stdout) || back.Host != hostile.Host || back.Error != hostile.Error {
		t.Errorf("jsonl changed the raw data: stdout %q host %q error %q", back.Stdout, back.Host, back.Error)
	}

	// csv: raw, as a CSV reader gives it back.
	var cs bytes.Buffer
	w, _ = output.New("csv", &cs, output.Filter{})
	w.Write(hostile)
	w.Close()
	rows, err := csv.NewReader(&cs).ReadAll()
	if err != nil || len(rows) != 2 {
		t.Fatalf("csv: %v, %d rows", err, len(rows))
	}
	if rows[1][1] != hostile.Host || rows[1][16] != string(hostile.Stdout) {
		t.Errorf("csv changed the raw data: host %q stdout %q", rows[1][1], rows[1][16])
	}

	// --outdir: the files hold the bytes as sent.
	dir := t.TempDir()
	od, err := output.NewOutDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	od.Write(hostile)
	b, err := os.ReadFile(filepath.Join(dir, output.FileName(hostile.Host)+".stdout"))
	if err != nil || !bytes.Equal(b, hostile.Stdout) {
		t.Errorf("outdir stdout %q, %v; want the raw %q", b, err, hostile.Stdout)
	}
}
