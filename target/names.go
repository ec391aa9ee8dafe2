package target

import (
	"errors"
	"slices"
	"strings"
)

// text is what the name helpers accept, so node-set expansions are checked
// and stored from their buffer without a string per name.
type text interface{ string | []byte }

// maxNameLen fits a name's length in the low byte of its ref.
const maxNameLen = 255

// nameTable holds distinct names in one arena, deduplicated by an
// open-addressing table of indexes rather than a map of strings: a million
// names cost their bytes plus ~16 bytes each, with no allocation per name.
// Two names are the same when they differ only in ASCII case or a trailing dot.
type nameTable struct {
	arena strings.Builder
	refs  []uint64 // offset<<8 | length, in first-seen order
	slots []uint32 // 1 + index into refs; 0 is empty
}

func (t *nameTable) len() int { return len(t.refs) }

// reserve makes room for n more names of about size bytes each, so a large
// node-set does not regrow the arena and the index step by step.
func (t *nameTable) reserve(n, size int) {
	t.arena.Grow(n * size)
	t.refs = slices.Grow(t.refs, n)
	for 2*(len(t.refs)+n) > len(t.slots) {
		t.grow()
	}
}

// name is the i-th name; the string shares the arena.
func (t *nameTable) name(i int) string { return refName(t.arena.String(), t.refs[i]) }

func refName(arena string, r uint64) string {
	off := r >> 8
	return arena[off : off+r&0xff]
}

// add stores s unless the table has it already, and reports whether it did.
func add[T text](t *nameTable, s T) (bool, error) {
	if 2*(len(t.refs)+1) > len(t.slots) {
		if len(t.refs) >= 1<<31 {
			return false, errors.New("more than 2^31 names")
		}
		t.grow()
	}
	i, found := find(t, s)
	if found {
		return false, nil
	}
	if len(s) > maxNameLen {
		return false, errors.New("name longer than 255 bytes")
	}
	t.refs = append(t.refs, uint64(t.arena.Len())<<8|uint64(len(s)))
	for k := 0; k < len(s); k++ { // bytewise: string(s) would allocate for []byte
		t.arena.WriteByte(s[k])
	}
	t.slots[i] = uint32(len(t.refs))
	return true, nil
}

// has reports whether the table holds s.
func has[T text](t *nameTable, s T) bool {
	if len(t.slots) == 0 {
		return false
	}
	_, found := find(t, s)
	return found
}

// find is s's slot, or the empty slot where it belongs.
func find[T text](t *nameTable, s T) (int, bool) {
	mask := len(t.slots) - 1
	arena := t.arena.String()
	for i := int(nameHash(s)) & mask; ; i = (i + 1) & mask {
		j := t.slots[i]
		if j == 0 {
			return i, false
		}
		if sameName(refName(arena, t.refs[j-1]), s) {
			return i, true
		}
	}
}

func (t *nameTable) grow() {
	n := 2 * len(t.slots)
	if n < 64 {
		n = 64
	}
	t.slots = make([]uint32, n)
	arena := t.arena.String()
	for j, r := range t.refs {
		i := int(nameHash(refName(arena, r))) & (n - 1)
		for t.slots[i] != 0 {
			i = (i + 1) & (n - 1)
		}
		t.slots[i] = uint32(j + 1)
	}
}

func lower(c byte) byte {
	if c >= 'A' && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

func trimDot[T text](s T) T {
	if len(s) > 0 && s[len(s)-1] == '.' {
		return s[:len(s)-1]
	}
	return s
}

// nameHash is FNV-1a over the lowered name without its trailing dot, mixed
// so that the low bits index the table well.
func nameHash[T text](s T) uint64 {
	s = trimDot(s)
	h := uint64(14695981039346656037)
	for i := 0; i < len(s); i++ {
		h = (h ^ uint64(lower(s[i]))) * 1099511628211
	}
	return mix(h)
}

func sameName[A, B text](a A, b B) bool {
	a, b = trimDot(a), trimDot(b)
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		if lower(a[i]) != lower(b[i]) {
			return false
		}
	}
	return true
}
