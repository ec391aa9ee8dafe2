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

// nsItem is one a-b item of a bracket group; width > 0 pads with zeros.
type nsItem struct {
	lo, hi uint64
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

// parseGroup reads the inside of a bracket group: "01-20", "1-3,7".
func parseGroup(g string) (items []nsItem, count uint64, err error) {
	if g == "" {
		return nil, 0, errors.New("empty '[]' (want [1-3] or [1,4,7-9])")
	}
	for _, it := range strings.Split(g, ",") {
		los, his, isRange := strings.Cut(it, "-")
		lo, err := nsNumber(los, it)
		if err != nil {
			return nil, 0, err
		}
		hi := lo
		if isRange {
			if hi, err = nsNumber(his, it); err != nil {
				return nil, 0, err
			}
		}
		if hi < lo {
			return nil, 0, fmt.Errorf("[%s]: range end before start", it)
		}
		w := 0
		if len(los) > 1 && los[0] == '0' {
			w = len(los)
		}
		items = append(items, nsItem{lo, hi, w})
		count += hi - lo + 1 // at most ~2^60 per item: cannot wrap in practice, capped below
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
			for n := it.lo; ; n++ {
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
// 127.0.0.5 give "127.0.0.[1-5]". It folds the rightmost number of each name
// first, then the numbers to its left (db[1-3].dc[1-2]), keeps zero padding,
// drops duplicates, and sorts the folded items. Parse accepts the
// comma-separated result as one spec: Parse([]string{Fold(x)}) gives back the
// names of x.
func Fold(names []string) string {
	items := make(map[string]struct{}, len(names))
	for _, n := range names {
		items[n] = struct{}{}
	}
	for {
		next, changed := foldOnce(items)
		items = next
		if !changed {
			break
		}
	}
	out := make([]string, 0, len(items))
	for it := range items {
		out = append(out, it)
	}
	sort.Strings(out)
	return strings.Join(out, ",")
}

// foldNum is one number of a fold group, as written.
type foldNum struct {
	v    uint64
	text string
}

// foldOnce groups the items by everything but their rightmost number outside
// brackets, and writes each group of two or more as one item.
func foldOnce(items map[string]struct{}) (map[string]struct{}, bool) {
	type group struct {
		prefix, suffix string
		nums           []foldNum
	}
	groups := map[string]*group{}
	out := make(map[string]struct{}, len(items))
	for it := range items {
		i, j, ok := rightmostNumber(it)
		if !ok {
			out[it] = struct{}{}
			continue
		}
		v, _ := strconv.ParseUint(it[i:j], 10, 64)
		key := it[:i] + "\x00" + it[j:]
		g := groups[key]
		if g == nil {
			g = &group{prefix: it[:i], suffix: it[j:]}
			groups[key] = g
		}
		g.nums = append(g.nums, foldNum{v, it[i:j]})
	}
	changed := false
	for _, g := range groups {
		if len(g.nums) == 1 {
			out[g.prefix+g.nums[0].text+g.suffix] = struct{}{}
			continue
		}
		changed = true
		out[g.prefix+"["+foldRanges(g.nums)+"]"+g.suffix] = struct{}{}
	}
	return out, changed
}

// rightmostNumber finds the last run of digits outside brackets, of at most
// maxDigits digits, that is not folded already (not followed by '[').
func rightmostNumber(s string) (i, j int, ok bool) {
	depth := 0
	for k := len(s) - 1; k >= 0; k-- {
		c := s[k]
		switch {
		case c == ']':
			depth++
		case c == '[':
			depth--
		case depth == 0 && c >= '0' && c <= '9':
			j = k + 1
			for k > 0 && s[k-1] >= '0' && s[k-1] <= '9' {
				k--
			}
			if j-k > maxDigits || (j < len(s) && s[j] == '[') || (k > 0 && s[k-1] == ']') {
				return 0, 0, false
			}
			return k, j, true
		}
	}
	return 0, 0, false
}

// foldRanges writes nums as "01-03,07": consecutive values with the same
// padding become one a-b item.
func foldRanges(nums []foldNum) string {
	sort.Slice(nums, func(a, b int) bool {
		if nums[a].v != nums[b].v {
			return nums[a].v < nums[b].v
		}
		return nums[a].text < nums[b].text
	})
	used := make([]bool, len(nums))
	var sb strings.Builder
	for k := range nums {
		if used[k] {
			continue
		}
		used[k] = true
		first, last := nums[k], nums[k]
		w := 0
		if len(first.text) > 1 && first.text[0] == '0' {
			w = len(first.text)
		}
		// Extend with last+1 written in the same padding; nums is sorted, so
		// it is among the next few entries.
		for j := k + 1; j < len(nums) && nums[j].v <= last.v+1; j++ {
			if !used[j] && nums[j].v == last.v+1 && nums[j].text == string(appendPadded(nil, nums[j].v, w)) {
				used[j] = true
				last = nums[j]
			}
		}
		if sb.Len() > 0 {
			sb.WriteByte(',')
		}
		sb.WriteString(first.text)
		if last.text != first.text {
			sb.WriteByte('-')
			sb.WriteString(last.text)
		}
	}
	return sb.String()
}
