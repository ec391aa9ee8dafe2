package output

import (
	"bufio"
	"crypto/sha256"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"

	"github.com/fanout/fanout/job"
	"github.com/fanout/fanout/target"
)

// Gather groups targets whose output is identical and prints each distinct
// output once, under its hosts folded into node-set form, when the sweep
// ends (like `clush -b` and `dshbak -c`):
//
//	---------------
//	web[01-20] (20)
//	---------------
//	hello world
//
// Targets with the same output but a different outcome (exit 0 or 3, auth
// failure) are apart; the outcome shows in the header. Memory is one copy
// of each distinct output plus the host names. Headers and outputs are
// escaped as AppendSafe does, newlines and tabs kept, so an output cannot
// drive the terminal.
type Gather struct {
	w      io.Writer
	groups map[[32]byte]*group
}

type group struct {
	first  uint64 // lowest index, to print groups in sweep order
	note   string // "" when up, else the outcome ("exit status 3", "timeout", ...)
	output []byte // stdout then stderr
	trunc  bool
	hosts  []string
}

// NewGather gathers Results and prints the groups to w on Close.
func NewGather(w io.Writer) *Gather { return &Gather{w: w, groups: map[[32]byte]*group{}} }

var _ Writer = (*Gather)(nil)

// Write adds r to the group of its output.
func (g *Gather) Write(r job.Result) error {
	note := ""
	if r.Status != job.Up {
		note = string(r.Class)
		if r.Class == job.ClassExit && r.ExitCode != nil {
			note = "exit status " + strconv.Itoa(*r.ExitCode)
		} else if len(r.Stdout) == 0 && len(r.Stderr) == 0 && r.Error != "" {
			// Without output the message is the content. Names in it would
			// split groups per host: the host's name and address, as whole
			// words, become HOST.
			msg := replaceWord(r.Error, r.Host, "HOST")
			if r.Addr != r.Host {
				msg = replaceWord(msg, r.Addr, "HOST")
			}
			note += ": " + msg
		}
	}
	h := sha256.New()
	fmt.Fprintf(h, "%s\x00%t\x00%d\x00", note, r.Truncated, len(r.Stdout))
	h.Write(r.Stdout)
	h.Write(r.Stderr)
	var key [32]byte
	h.Sum(key[:0])
	gr, ok := g.groups[key]
	if !ok {
		out := make([]byte, 0, len(r.Stdout)+len(r.Stderr))
		out = append(append(out, r.Stdout...), r.Stderr...)
		gr = &group{first: r.Index, note: note, output: out, trunc: r.Truncated}
		g.groups[key] = gr
	}
	if r.Index < gr.first {
		gr.first = r.Index
	}
	gr.hosts = append(gr.hosts, r.Host)
	return nil
}

// Close prints every group, in the order of its first target.
func (g *Gather) Close() error {
	gs := make([]*group, 0, len(g.groups))
	for _, gr := range g.groups {
		gs = append(gs, gr)
	}
	sort.Slice(gs, func(i, j int) bool { return gs[i].first < gs[j].first })
	bw := bufio.NewWriterSize(g.w, 64<<10)
	for _, gr := range gs {
		head := fmt.Sprintf("%s (%d)", Safe(target.Fold(gr.hosts)), len(gr.hosts))
		if gr.note != "" {
			head += " [" + Safe(gr.note) + "]"
		}
		if gr.trunc {
			head += " [truncated]"
		}
		rule := strings.Repeat("-", min(len(head), 78))
		fmt.Fprintf(bw, "%s\n%s\n%s\n", rule, head, rule)
		out := AppendSafe(nil, string(gr.output), true)
		bw.Write(out)
		if n := len(out); n > 0 && out[n-1] != '\n' {
			bw.WriteByte('\n')
		}
	}
	g.groups = map[[32]byte]*group{}
	return bw.Flush()
}

// replaceWord replaces the whole-word occurrences of word in s: not inside
// a longer name or address (web in webserver, web.example.com or
// x.web; 10.0.0.1 in 10.0.0.12; fd00::1 in fd00::1:5).
func replaceWord(s, word, with string) string {
	if word == "" {
		return s
	}
	var sb strings.Builder
	for i := 0; ; {
		j := strings.Index(s[i:], word)
		if j < 0 {
			sb.WriteString(s[i:])
			return sb.String()
		}
		j += i
		end := j + len(word)
		if wordBefore(s, j) || wordAfter(s, end, word) {
			sb.WriteString(s[i : j+1])
			i = j + 1
			continue
		}
		sb.WriteString(s[i:j])
		sb.WriteString(with)
		i = end
	}
}

func nameByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_'
}

// wordBefore reports whether s[j] continues a name that starts before it.
func wordBefore(s string, j int) bool {
	return j > 0 && (nameByte(s[j-1]) || s[j-1] == '.' && j > 1 && nameByte(s[j-2]))
}

// wordAfter reports whether s[end:] continues the name that ends at end: a
// name byte, or '.' (':' after an IPv6 address) followed by one.
func wordAfter(s string, end int, word string) bool {
	if end >= len(s) {
		return false
	}
	c := s[end]
	if nameByte(c) {
		return true
	}
	sep := c == '.' || c == ':' && strings.Contains(word, ":")
	return sep && end+1 < len(s) && nameByte(s[end+1])
}
