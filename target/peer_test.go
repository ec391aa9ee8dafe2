package target

import (
	"bufio"
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// The peers are the truth for their syntax: ClusterShell's nodeset for
// node-sets, steps, set operations and folding, nmap -sL -n (which lists,
// sends nothing) for octet ranges. .ci/run installs both; without them the
// comparisons skip.

// clusterShell answers requests (see testdata/clustershell.py) with the
// Python that runs the installed nodeset, in one process.
func clusterShell(t *testing.T, reqs []string) []string {
	t.Helper()
	path, err := exec.LookPath("nodeset")
	if err != nil {
		t.Skip("nodeset (ClusterShell) not installed: apt-get install clustershell")
	}
	py := "/usr/bin/python3"
	if b, err := os.ReadFile(path); err == nil && bytes.HasPrefix(b, []byte("#!")) {
		py = strings.Fields(string(b[2:bytes.IndexByte(b, '\n')]))[0]
	}
	cmd := exec.Command(py, "testdata/clustershell.py")
	cmd.Stdin = strings.NewReader(strings.Join(reqs, "\n") + "\n")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("clustershell.py: %v\n%s", err, stderr.Bytes())
	}
	lines := strings.Split(strings.TrimSuffix(string(out), "\n"), "\n")
	if len(lines) != len(reqs) {
		t.Fatalf("clustershell.py answered %d lines to %d requests\n%s", len(lines), len(reqs), stderr.Bytes())
	}
	return lines
}

// sortedUnique is the names of s, sorted, for comparing host lists.
func sortedUnique(names []string) []string {
	out := slices.Clone(names)
	slices.Sort(out)
	return slices.Compact(out)
}

// parsedNames is Parse(spec)'s names sorted, or the error.
func parsedNames(spec string) ([]string, error) {
	s, err := Parse([]string{spec}, ParseOptions{MaxTargets: 1 << 20})
	if err != nil {
		return nil, err
	}
	out := make([]string, 0, s.Len())
	for i := uint64(0); i < s.Len(); i++ {
		out = append(out, s.At(i).Name())
	}
	return sortedUnique(out), nil
}

// nodeSetGen writes random node-sets in the syntax both sides share:
// lower-case names, bracket groups of numbers, ranges and steps with one
// width per range (as ClusterShell requires), several groups, and set
// operations between operands that overlap.
type nodeSetGen struct{ rng *rand.Rand }

func (g nodeSetGen) number(w int) (uint64, string) {
	limit := 200
	if w > 0 {
		limit = min(limit, pow10(w)-1)
	}
	v := uint64(g.rng.IntN(limit + 1))
	return v, string(appendPadded(nil, v, w))
}

func pow10(w int) int {
	p := 1
	for range w {
		p *= 10
	}
	return p
}

func (g nodeSetGen) group() string {
	w := []int{0, 0, 2, 3}[g.rng.IntN(4)]
	var items []string
	for k := g.rng.IntN(3); k >= 0; k-- {
		lo, los := g.number(w)
		switch g.rng.IntN(4) {
		case 0:
			items = append(items, los)
		case 1, 2:
			hi := lo + uint64(g.rng.IntN(15))
			if w > 0 && hi >= uint64(pow10(w)) {
				hi = uint64(pow10(w)) - 1
			}
			items = append(items, los+"-"+string(appendPadded(nil, hi, w)))
		default:
			hi := lo + uint64(1+g.rng.IntN(20))
			if w > 0 && hi >= uint64(pow10(w)) {
				hi = uint64(pow10(w)) - 1
			}
			if hi == lo {
				items = append(items, los)
				continue
			}
			items = append(items, fmt.Sprintf("%s-%s/%d", los, appendPadded(nil, hi, w), 1+g.rng.IntN(4)))
		}
	}
	return "[" + strings.Join(items, ",") + "]"
}

func (g nodeSetGen) operand(prefix string) string {
	s := prefix + g.group()
	switch g.rng.IntN(4) {
	case 0:
		s += ".dc" + g.group()
	case 1:
		s += "-ib"
	case 2:
		s += ".dc" + strconv.Itoa(g.rng.IntN(3))
	}
	return s
}

func (g nodeSetGen) spec() string {
	prefixes := []string{"n", "node", "web", "db", "rack1-n", "x_", "a.b"}
	p := prefixes[g.rng.IntN(len(prefixes))]
	s := g.operand(p)
	for k := g.rng.IntN(4); k > 0; k-- {
		s += string(",!&^"[g.rng.IntN(4)])
		if g.rng.IntN(4) == 0 {
			p = prefixes[g.rng.IntN(len(prefixes))]
		}
		s += g.operand(p)
	}
	return s
}

// names is a random list of names that differ in some of their numbers,
// for folding: one to three numbers a name, the varying one anywhere.
func (g nodeSetGen) names() []string {
	patterns := []string{"node%02d.dc%d", "r%dn%d", "n%d", "web%03d", "c%d-%d.ib%d", "x%02dy"}
	p := patterns[g.rng.IntN(len(patterns))]
	nargs := strings.Count(p, "%")
	fixed := make([]any, nargs)
	for k := range fixed {
		fixed[k] = g.rng.IntN(3)
	}
	vary := g.rng.IntN(nargs)
	var out []string
	for k := g.rng.IntN(150) + 1; k > 0; k-- {
		args := slices.Clone(fixed)
		args[vary] = g.rng.IntN(130)
		if g.rng.IntN(5) == 0 { // another number varies too
			args[g.rng.IntN(nargs)] = g.rng.IntN(4)
		}
		out = append(out, fmt.Sprintf(p, args...))
	}
	return out
}

// Random and hand-written node-sets mean the same hosts here and in
// ClusterShell.
func TestNodeSetMatchesClusterShell(t *testing.T) {
	t.Parallel()
	specs := []string{
		"node[1-10/2]", "n[01-10/3]", "n[1-5/2,8]", "a,b!b", "n[1-5]!n3,n9", "n[1-5]&n[3-9]",
		"n[1-5],n[7-8]&n[2-7]", "n[1-5]^n[3-9]", "db[1-3,7].dc[1-2]", "web[01-20].example.com",
		"n[8-10]", "n[098-100]", "rack[1-2]-node[01-04]!rack2-node[02-03]", "x[1-3]y[4-5]z",
		"n[1-100/10]&n[1-100/15]", "a.b[1-3].c",
	}
	rng := rand.New(rand.NewPCG(19, 2026))
	g := nodeSetGen{rng}
	for len(specs) < 2000 {
		specs = append(specs, g.spec())
	}
	reqs := make([]string, len(specs))
	for k, s := range specs {
		reqs[k] = "e\t" + s
	}
	answers := clusterShell(t, reqs)
	refused := 0
	for k, spec := range specs {
		got, err := parsedNames(spec)
		if strings.HasPrefix(answers[k], "ERROR\t") {
			refused++
			if k < 16 {
				t.Errorf("ClusterShell refuses hand-written %q: %s", spec, answers[k])
			}
			continue
		}
		want := sortedUnique(strings.Fields(answers[k]))
		if err != nil {
			if len(want) == 0 {
				continue // empty in both: ours says "no targets"
			}
			t.Errorf("Parse(%q): %v\nClusterShell: %d names", spec, err, len(want))
			continue
		}
		if !slices.Equal(got, want) {
			t.Errorf("Parse(%q) differs from ClusterShell\n ours: %v\n them: %v", spec, got, want)
		}
	}
	if refused > len(specs)/10 {
		t.Errorf("ClusterShell refused %d of %d generated sets: the generator writes what it does not read", refused, len(specs))
	}
	t.Logf("%d node-sets compared with ClusterShell, %d refused by it", len(specs)-refused, refused)
}

// Fold writes what ClusterShell reads back to the same names, and folds
// as far as ClusterShell does where it makes one item; ClusterShell's own
// folds read here to the same names.
func TestFoldMatchesClusterShell(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(7, 19))
	g := nodeSetGen{rng}
	lists := [][]string{seqPad("node", 1, 128, 2, ""), seqPad("node", 1, 20, 2, ".dc1"), seqPad("n", 1, 1001, 3, "")}
	for len(lists) < 2000 {
		lists = append(lists, g.names())
	}
	var reqs []string
	folds := make([]string, len(lists))
	for k, l := range lists {
		folds[k] = Fold(l)
		reqs = append(reqs, "e\t"+folds[k], "f\t"+strings.Join(l, " "))
	}
	answers := clusterShell(t, reqs)
	worse := 0
	for k, l := range lists {
		want := sortedUnique(l)
		back, theirs := answers[2*k], answers[2*k+1]
		if strings.HasPrefix(back, "ERROR\t") {
			t.Errorf("ClusterShell cannot read Fold(%d names) = %q: %s", len(l), folds[k], back)
			continue
		}
		if got := sortedUnique(strings.Fields(back)); !slices.Equal(got, want) {
			t.Errorf("ClusterShell reads Fold = %q as\n%v\nwant %v", folds[k], got, want)
		}
		if got, err := parsedNames(folds[k]); err != nil || !slices.Equal(got, want) {
			t.Errorf("Parse(Fold = %q) = %v, %v; want %v", folds[k], got, err, want)
		}
		// And ClusterShell's own fold reads here to the same names.
		if got, err := parsedNames(theirs); err != nil || !slices.Equal(got, want) {
			t.Errorf("Parse(ClusterShell's fold %q) = %v, %v; want %v", theirs, got, err, want)
		}
		ours, them := items(folds[k]), items(theirs)
		if them == 1 && ours != 1 {
			t.Errorf("Fold(%d names) = %q in %d items; ClusterShell folds it into one: %q", len(l), folds[k], ours, theirs)
		}
		if ours > them {
			worse++
		}
	}
	if worse > 0 {
		t.Errorf("%d of %d folds in more items than ClusterShell's own fold", worse, len(lists))
	}
}

// items counts the top-level comma-separated items of a folded set.
func items(s string) int { return len(splitTop(s)) }

// nmapList is the addresses nmap -sL -n lists for specs, in its order.
func nmapList(t *testing.T, specs []string) []string {
	t.Helper()
	cmd := exec.Command("nmap", append([]string{"-sL", "-n", "-oG", "-"}, specs...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("nmap -sL -n %v: %v\n%s", specs, err, out)
	}
	var addrs []string
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		// Grepable output: "Host: 127.0.0.1 ()	Status: Unknown".
		if f := strings.Fields(sc.Text()); len(f) >= 2 && f[0] == "Host:" {
			addrs = append(addrs, f[1])
		}
	}
	return addrs
}

// Random and hand-written octet ranges list the same addresses, in the
// same order, here and in nmap (on 127.0.0.0/8 only: -sL sends nothing,
// and the specs stay on loopback all the same).
func TestOctetRangesMatchNmap(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("nmap"); err != nil {
		t.Skip("nmap not installed: apt-get install nmap")
	}
	specs := []string{"127.0.1-3.5", "127.0.0.*", "127.0-3.0.1-254", "127.0.0.1,3-4", "127.0.0.-2",
		"127.0.0.254-", "127.0.0.1-3,2-5", "127.1.2-3.-", "127.255.255.250-", "127.0.0.0"}
	rng := rand.New(rand.NewPCG(127, 1))
	octet := func(big bool) string {
		var items []string
		for k := rng.IntN(2); k >= 0; k-- {
			lo := rng.IntN(256)
			hi := min(255, lo+rng.IntN(6))
			switch rng.IntN(6) {
			case 0:
				items = append(items, strconv.Itoa(lo))
			case 1:
				items = append(items, fmt.Sprintf("%d-%d", lo, hi))
			case 2:
				if big {
					return "*"
				}
				items = append(items, fmt.Sprintf("%d-%d", lo, hi))
			case 3:
				if big {
					items = append(items, fmt.Sprintf("%d-", 250+rng.IntN(6)))
				} else {
					items = append(items, strconv.Itoa(hi))
				}
			case 4:
				items = append(items, fmt.Sprintf("-%d", rng.IntN(4)))
			default:
				items = append(items, fmt.Sprintf("%d,%d", lo, hi))
			}
		}
		return strings.Join(items, ",")
	}
	for len(specs) < 2000 {
		last := rng.IntN(3) // which octet may be large
		specs = append(specs, fmt.Sprintf("127.%s.%s.%s", octet(last == 0), octet(last == 1), octet(last == 2)))
	}
	for lo := 0; lo < len(specs); lo += 50 {
		batch := specs[lo:min(lo+50, len(specs))]
		want := nmapList(t, batch)
		var got []string
		for _, spec := range batch {
			s, err := Parse([]string{spec}, ParseOptions{})
			if err != nil {
				t.Fatalf("Parse(%q): %v", spec, err)
			}
			got = append(got, names(t, s)...)
		}
		if !slices.Equal(got, want) {
			for _, spec := range batch { // name the spec that differs
				g, _ := parsedNames(spec)
				if w := sortedUnique(nmapList(t, []string{spec})); !slices.Equal(g, w) {
					t.Fatalf("Parse(%q) = %v\nnmap -sL -n lists %v", spec, g, w)
				}
			}
			t.Fatalf("batch %d: %d addresses here, %d from nmap", lo/50, len(got), len(want))
		}
	}
}

// The nodeset command itself (not only its library) reads hand-written
// sets and our folds as we do.
func TestNodeSetCommand(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("nodeset"); err != nil {
		t.Skip("nodeset (ClusterShell) not installed: apt-get install clustershell")
	}
	for _, spec := range []string{"node[1-10/2]", "n[1-5],n[7-8]&n[2-7]!n4", "n[1-5]^n[3-9]", Fold(seqPad("node", 1, 128, 2, "")), Fold(seqPad("node", 1, 20, 2, ".dc1"))} {
		out, err := exec.Command("nodeset", "-e", "-S", "\n", spec).CombinedOutput()
		if err != nil {
			t.Fatalf("nodeset -e %q: %v\n%s", spec, err, out)
		}
		want := sortedUnique(strings.Fields(string(out)))
		got, err := parsedNames(spec)
		if err != nil || !slices.Equal(got, want) {
			t.Errorf("Parse(%q) = %v, %v\nnodeset -e: %v", spec, got, err, want)
		}
		out, err = exec.Command("nodeset", "-f", spec).CombinedOutput()
		if err != nil {
			t.Fatalf("nodeset -f %q: %v\n%s", spec, err, out)
		}
		if back, err := parsedNames(strings.TrimSpace(string(out))); err != nil || !slices.Equal(back, want) {
			t.Errorf("Parse(nodeset -f %q = %q) = %v, %v", spec, out, back, err)
		}
	}
}
