package target

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"math/bits"
	"sort"
	"strconv"
	"strings"
)

// maxDigits bounds a node-set number so that it fits a uint64 with room.
const maxDigits = 18

// nsItem is one a-b or a-b/step item of a bracket group; width > 0 pads
// with zeros.
type nsItem struct {
	lo, hi uint64
	step   uint64 // 1 unless a-b/step
	width  int
}

// nsPiece is literal text or, when group is set, one bracket group.
type nsPiece struct {
	text  string
	group []nsItem
}

// parseNodeSet splits a node-set into pieces and counts its expansions
// (saturated at MaxUint64).
func parseNodeSet(s string) (pieces []nsPiece, count uint64, err error) {
	count = 1
	for len(s) > 0 {
		open := strings.IndexAny(s, "[]")
		if open < 0 {
			pieces = append(pieces, nsPiece{text: s})
			break
		}
		if s[open] == ']' {
			return nil, 0, errors.New("unmatched ']' (want a node-set such as web[01-20].example.com)")
		}
		if open > 0 {
			pieces = append(pieces, nsPiece{text: s[:open]})
		}
		end := strings.IndexAny(s[open+1:], "[]")
		if end < 0 {
			return nil, 0, errors.New("unclosed '[' (want a node-set such as web[01-20].example.com)")
		}
		end += open + 1
		if s[end] == '[' {
			return nil, 0, errors.New("nested '[' (want a node-set such as web[01-20].example.com)")
		}
		group, n, err := parseGroup(s[open+1 : end])
		if err != nil {
			return nil, 0, err
		}
		pieces = append(pieces, nsPiece{group: group})
		hi, lo := bits.Mul64(count, n)
		if hi != 0 {
			lo = math.MaxUint64
		}
		count = lo
		s = s[end+1:]
	}
	return pieces, count, nil
}

// parseGroup reads the inside of a bracket group: "01-20", "1-3,7",
// "1-10/2" (every second number, as ClusterShell writes steps).
func parseGroup(g string) (items []nsItem, count uint64, err error) {
	if g == "" {
		return nil, 0, errors.New("empty '[]' (want [1-3] or [1,4,7-9])")
	}
	for _, it := range strings.Split(g, ",") {
		rng, steps, hasStep := strings.Cut(it, "/")
		los, his, isRange := strings.Cut(rng, "-")
		lo, err := nsNumber(los, it)
		if err != nil {
			return nil, 0, err
		}
		hi, step := lo, uint64(1)
		if isRange {
			if hi, err = nsNumber(his, it); err != nil {
				return nil, 0, err
			}
		}
		if hasStep {
			if !isRange {
				return nil, 0, fmt.Errorf("[%s]: a step goes with a range (want [1-10/2])", it)
			}
			if step, err = nsNumber(steps, it); err != nil {
				return nil, 0, err
			}
			if step == 0 {
				return nil, 0, fmt.Errorf("[%s]: step 0 (want a step of 1 or more, as in [1-10/2])", it)
			}
		}
		if hi < lo {
			return nil, 0, fmt.Errorf("[%s]: range end before start", it)
		}
		w := 0
		if len(los) > 1 && los[0] == '0' {
			w = len(los)
		}
		hi -= (hi - lo) % step // the last number the step reaches
		items = append(items, nsItem{lo, hi, step, w})
		count += (hi-lo)/step + 1 // at most ~2^60 per item: cannot wrap in practice, capped below
		if count > 1<<62 {
			count = 1 << 62
		}
	}
	return items, count, nil
}

func nsNumber(s, item string) (uint64, error) {
	if s == "" {
		return 0, fmt.Errorf("[%s]: empty number (want [1-3] or [1,4,7-9])", item)
	}
	if len(s) > maxDigits {
		return 0, fmt.Errorf("[%s]: number %s has more than %d digits", item, s, maxDigits)
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, fmt.Errorf("[%s]: %q is not a number (want [1-3] or [1,4,7-9])", item, s)
		}
	}
	n, _ := strconv.ParseUint(s, 10, 64)
	return n, nil
}

// addNodeSet expands a node-set and adds every expansion as a plain spec,
// or, when q is set, as a host with q's user and port.
func (b *builder) addNodeSet(s string, q *qualified) error {
	pieces, count, err := parseNodeSet(s)
	if err != nil {
		return err
	}
	if count > b.limit {
		return fmt.Errorf("%w: node-set expands to %s names, more than the limit of %d; raise it with --max-targets N",
			ErrTooMany, countString(count), b.limit)
	}
	first := true
	return expand(pieces, func(name []byte) error {
		if first && (q != nil || !onlyDigitsDotsDash(name) && !bytes.ContainsAny(name, ":/,")) {
			b.names.reserve(int(min(count, 1<<24)))
		}
		first = false
		var err error
		if q != nil {
			err = addEntry(b, q.user, name, q.port)
		} else {
			err = b.addExpansion(name)
		}
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		return nil
	})
}

// addExpansion adds one expansion of a node-set, without a string per
// expansion for the common cases (addresses and hostnames).
func (b *builder) addExpansion(s []byte) error {
	special, dash := false, false
	for _, c := range s {
		special = special || c == ':' || c == '/' || c == ',' || c == '%'
		dash = dash || c == '-'
	}
	switch {
	case special:
	case onlyDigitsDotsDash(s):
		if dash {
			break // a range
		}
		v, err := parseIPv4(s)
		if err != nil {
			return err
		}
		b.s4.add(u32(v), &b.v4)
		return nil
	default:
		if err := checkHostname(s); err != nil {
			return err
		}
		return addName(b, s)
	}
	return b.addPlain(string(s))
}

func countString(n uint64) string {
	if n == math.MaxUint64 {
		return "more than " + strconv.FormatUint(n, 10)
	}
	return strconv.FormatUint(n, 10)
}

// expand calls fn with every expansion of pieces, rightmost group fastest.
func expand(pieces []nsPiece, fn func([]byte) error) error {
	var buf []byte
	var rec func(k int) error
	rec = func(k int) error {
		if k == len(pieces) {
			return fn(buf)
		}
		p := pieces[k]
		mark := len(buf)
		if p.group == nil {
			buf = append(buf, p.text...)
			err := rec(k + 1)
			buf = buf[:mark]
			return err
		}
		for _, it := range p.group {
			for n := it.lo; ; n += it.step {
				buf = appendPadded(buf[:mark], n, it.width)
				if err := rec(k + 1); err != nil {
					return err
				}
				if n == it.hi {
					break
				}
			}
		}
		buf = buf[:mark]
		return nil
	}
	return rec(0)
}

func appendPadded(buf []byte, n uint64, width int) []byte {
	var tmp [20]byte
	d := strconv.AppendUint(tmp[:0], n, 10)
	for i := len(d); i < width; i++ {
		buf = append(buf, '0')
	}
	return append(buf, d...)
}

// Fold is the inverse of node-set expansion, for gathered output in the style
// of clush -b: web01,web02,web03,db1 gives "db1,web[01-03]", and 127.0.0.1 to
// 127.0.0.5 give "127.0.0.[1-5]". Every number of a name folds, not only the
// last one (node01.dc1 to node20.dc1 give "node[01-20].dc1"), and several at
// once (db[1-3].dc[1-2]); it keeps zero padding, drops duplicates, and sorts
// the folded items.
//
// What it writes reads back to the same names in Parse and in ClusterShell
// (nodeset -e): a range keeps one width, as ClusterShell requires, so n01 to
// n128 fold to "n[01-99,100-128]", never "n[01-128]", which ClusterShell
// refuses. Parse([]string{Fold(x)}) gives back the names of x.
func Fold(names []string) string {
	seen := make(map[string]struct{}, len(names))
	groups := map[string]*foldGroup{}
	var order []string // group keys, for a deterministic walk
	var out []string
	for _, n := range names {
		if _, dup := seen[n]; dup {
			continue
		}
		seen[n] = struct{}{}
		lits, nums := splitNumbers(n)
		if len(nums) == 0 {
			out = append(out, n)
			continue
		}
		key := strings.Join(lits, "\x00")
		g := groups[key]
		if g == nil {
			g = &foldGroup{lits: lits}
			groups[key] = g
			order = append(order, key)
		}
		v := make([][]foldNum, len(nums))
		for k, num := range nums {
			v[k] = []foldNum{num}
		}
		g.items = append(g.items, v)
	}
	for _, key := range order {
		g := groups[key]
		g.fold()
		for _, it := range g.items {
			out = append(out, g.write(it))
		}
	}
	sort.Strings(out)
	return strings.Join(out, ",")
}

// foldNum is one number of a name, as written.
type foldNum struct {
	v    uint64
	text string
}

// width is the zero padding of a number as written: its length when it
// starts with a 0 (and is not 0 itself), else 0 (no padding).
func (n foldNum) width() int {
	if len(n.text) > 1 && n.text[0] == '0' {
		return len(n.text)
	}
	return 0
}

// splitNumbers cuts name into literal text around its runs of digits:
// lits has one more entry than nums. A run longer than maxDigits stays text.
func splitNumbers(name string) (lits []string, nums []foldNum) {
	start := 0 // of the current literal
	for i := 0; i < len(name); {
		if name[i] < '0' || name[i] > '9' {
			i++
			continue
		}
		j := i
		for j < len(name) && name[j] >= '0' && name[j] <= '9' {
			j++
		}
		if j-i <= maxDigits {
			v, _ := strconv.ParseUint(name[i:j], 10, 64)
			lits = append(lits, name[start:i])
			nums = append(nums, foldNum{v, name[i:j]})
			start = j
		}
		i = j
	}
	return append(lits, name[start:]), nums
}

// foldGroup is the names that differ only in their numbers: the same
// literal text around the same count of numbers. Each item is a product of
// one set of numbers per position (an axis).
type foldGroup struct {
	lits  []string
	items [][][]foldNum
}

// fold merges items that differ on one axis only, until no two items
// merge: node01.dc1 and node02.dc1 differ on the first axis and merge even
// though their last numbers never vary. Each step folds the axis that
// merges the most items (the rightmost of equals), so that a few items
// that vary on another axis do not take numbers from a long run.
func (g *foldGroup) fold() {
	axes := len(g.lits) - 1
	for len(g.items) > 1 {
		best, most := -1, 0
		for a := axes - 1; a >= 0; a-- {
			if n := len(g.items) - g.distinctRest(a); n > most {
				best, most = a, n
			}
		}
		if best < 0 {
			return
		}
		g.foldAxis(best)
	}
}

// distinctRest counts the items' distinct numbers on every axis but a:
// the items left once a is folded.
func (g *foldGroup) distinctRest(a int) int {
	seen := make(map[string]struct{}, len(g.items))
	for _, it := range g.items {
		seen[restKey(it, a)] = struct{}{}
	}
	return len(seen)
}

// restKey is it's numbers on every axis but a, as a map key.
func restKey(it [][]foldNum, a int) string {
	var sb strings.Builder
	for k, nums := range it {
		if k != a {
			writeRanges(&sb, nums)
		}
		sb.WriteByte(0)
	}
	return sb.String()
}

// foldAxis merges the items whose numbers are the same on every axis but a.
// The items of a group are disjoint, so the
// sets of a merged axis are too: the union is a plain concatenation.
func (g *foldGroup) foldAxis(a int) {
	byRest := make(map[string]int, len(g.items))
	out := g.items[:0:0]
	for _, it := range g.items {
		key := restKey(it, a)
		if j, ok := byRest[key]; ok {
			out[j][a] = append(out[j][a], it[a]...)
			continue
		}
		byRest[key] = len(out)
		cp := make([][]foldNum, len(it))
		copy(cp, it)
		cp[a] = append([]foldNum(nil), it[a]...)
		out = append(out, cp)
	}
	for _, it := range out {
		sortNums(it[a])
	}
	g.items = out
}

// write is one folded item: the literals with each axis between them, in
// brackets when it holds more than one number.
func (g *foldGroup) write(it [][]foldNum) string {
	var sb strings.Builder
	for k, nums := range it {
		sb.WriteString(g.lits[k])
		if len(nums) == 1 {
			sb.WriteString(nums[0].text)
			continue
		}
		sb.WriteByte('[')
		writeRanges(&sb, nums)
		sb.WriteByte(']')
	}
	sb.WriteString(g.lits[len(g.lits)-1])
	return sb.String()
}

func sortNums(nums []foldNum) {
	sort.Slice(nums, func(a, b int) bool {
		if nums[a].v != nums[b].v {
			return nums[a].v < nums[b].v
		}
		return nums[a].text < nums[b].text
	})
}

// writeRanges writes nums (sorted) as "01-03,07": consecutive values of one
// width become one a-b item. A padded range keeps one length, as
// ClusterShell requires ("01-99,100-128", not "01-128"); an unpadded one
// may grow ("8-10").
func writeRanges(sb *strings.Builder, nums []foldNum) {
	used := make([]bool, len(nums))
	first := true
	for k := range nums {
		if used[k] {
			continue
		}
		used[k] = true
		lo, hi := nums[k], nums[k]
		w := lo.width()
		// Extend with hi+1 written in the same padding; nums is sorted, so
		// it is among the next few entries.
		for j := k + 1; j < len(nums) && nums[j].v <= hi.v+1; j++ {
			n := nums[j]
			// One width: no padding, or the padded length (a text of that
			// length for hi+1 is its padded form, "10" after "09").
			sameWidth := w == 0 && n.width() == 0 || w > 0 && len(n.text) == w
			if used[j] || n.v != hi.v+1 || !sameWidth {
				continue
			}
			used[j] = true
			hi = n
		}
		if !first {
			sb.WriteByte(',')
		}
		first = false
		sb.WriteString(lo.text)
		if hi.text != lo.text {
			sb.WriteByte('-')
			sb.WriteString(hi.text)
		}
	}
}
