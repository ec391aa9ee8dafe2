package target

import (
	"errors"
	"unsafe"
)

// text is what the name helpers accept, so node-set expansions are checked
// and stored from their buffer without a string per name.
type text interface{ string | []byte }

// maxNameLen fits a name's length in the byte that precedes it in a chunk.
const maxNameLen = 255

const (
	chunkBits = 20 // 1 MiB chunks: a name never straddles two
	chunkSize = 1 << chunkBits
	// maxChunks keeps 1 + the offset of every name within a uint32.
	maxChunks = 1<<(32-chunkBits) - 1
	// markEvery names, the offset of one is kept: At walks at most
	// markEvery-1 length bytes from it.
	markBits  = 4
	markEvery = 1 << markBits
)

// nameTable holds distinct names, each as a length byte and its bytes,
// back to back in 1 MiB chunks that are filled once and never copied, and
// deduplicates them with an open-addressing table of their offsets. A name
// costs its bytes plus one, as in a file of one name a line, and the
// offsets of every 16th name: no string header, no allocation per name. The
// table (4 to 8 bytes a name) is dropped once the names are final (freeze).
// Two names are the same when they differ only in ASCII case or a trailing
// dot.
type nameTable struct {
	chunks []string // full chunks
	cur    []byte   // the chunk being filled, only appended to: strings viewing it stay true
	n      int
	marks  []uint32 // offset (chunk<<chunkBits | position) of names 0, 16, 32, ...
	slots  []uint32 // 1 + the offset of a name; 0 is empty
}

func (t *nameTable) len() int { return t.n }

// reserve makes the dedup table ready for n more names, so that a large
// node-set does not regrow it step by step.
func (t *nameTable) reserve(n int) {
	for 4*(t.n+n) > 3*len(t.slots) {
		t.grow()
	}
}

// chunk is chunk c, the one being filled included.
func (t *nameTable) chunk(c uint32) string {
	if int(c) < len(t.chunks) {
		return t.chunks[c]
	}
	return view(t.cur)
}

// view is b as a string without a copy: b is only ever appended to, so
// the bytes a view shows never change.
func view(b []byte) string { return unsafe.String(unsafe.SliceData(b), len(b)) }

// room makes room for n more bytes in the chunk being filled, moving to a
// new chunk when it is full. The first chunk starts small and doubles (most
// sets hold a few names); the others are allocated whole.
func (t *nameTable) room(n int) error {
	if len(t.cur)+n > chunkSize {
		if len(t.chunks)+1 >= maxChunks {
			return errors.New("names take more than 4 GiB")
		}
		t.chunks = append(t.chunks, view(t.cur))
		t.cur = make([]byte, 0, chunkSize)
	}
	if len(t.cur)+n > cap(t.cur) {
		c := min(max(2*cap(t.cur), 512, len(t.cur)+n), chunkSize)
		t.cur = append(make([]byte, 0, c), t.cur...)
	}
	return nil
}

// at is the name at offset off; the string shares the chunk.
func (t *nameTable) at(off uint32) string {
	ch := t.chunk(off >> chunkBits)
	p := off & (chunkSize - 1)
	return ch[p+1 : p+1+uint32(ch[p])]
}

// add stores s unless the table has it already, and reports whether it did.
func add[T text](t *nameTable, s T) (bool, error) {
	if 4*(t.n+1) > 3*len(t.slots) {
		if t.n >= 1<<31 {
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
	if err := t.room(1 + len(s)); err != nil {
		return false, err
	}
	off := push(t, s)
	t.slots[i] = off + 1
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
	for i := int(nameHash(s)) & mask; ; i = (i + 1) & mask {
		o := t.slots[i]
		if o == 0 {
			return i, false
		}
		if sameName(t.at(o-1), s) {
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
	t.each(func(off uint32, name string) bool {
		i := int(nameHash(name)) & (n - 1)
		for t.slots[i] != 0 {
			i = (i + 1) & (n - 1)
		}
		t.slots[i] = off + 1
		return true
	})
}

// each calls fn with every name in order, and its offset, until fn returns
// false.
func (t *nameTable) each(fn func(off uint32, name string) bool) {
	for c := 0; c <= len(t.chunks); c++ {
		ch := t.chunk(uint32(c))
		for p := 0; p < len(ch); {
			l := int(ch[p])
			if !fn(uint32(c)<<chunkBits|uint32(p), ch[p+1:p+1+l]) {
				return
			}
			p += 1 + l
		}
	}
}

// push appends s, for which there is room, and returns its offset.
func push[T text](t *nameTable, s T) uint32 {
	off := uint32(len(t.chunks))<<chunkBits | uint32(len(t.cur))
	if t.n%markEvery == 0 {
		t.marks = append(t.marks, off)
	}
	t.cur = append(t.cur, byte(len(s)))
	t.cur = append(t.cur, s...)
	t.n++
	return off
}

// freeze returns the names as a list and empties t (its dedup table too).
func (t *nameTable) freeze() nameList {
	l := nameList{chunks: t.chunks, marks: t.marks, n: t.n}
	if len(t.cur) > 0 {
		l.chunks = append(l.chunks, view(t.cur))
	}
	*t = nameTable{}
	return l
}

// nameList is a frozen nameTable: the names of a Set.
type nameList struct {
	chunks []string
	marks  []uint32
	n      int
}

// at is the k-th name: from the mark before it, a walk over at most 15
// length bytes.
func (l *nameList) at(k int) string {
	off := l.marks[k>>markBits]
	for j := k & (markEvery - 1); j > 0; j-- {
		c, p := off>>chunkBits, off&(chunkSize-1)
		ch := l.chunks[c]
		p += 1 + uint32(ch[p])
		if int(p) >= len(ch) {
			c, p = c+1, 0
		}
		off = c<<chunkBits | p
	}
	ch := l.chunks[off>>chunkBits]
	p := off & (chunkSize - 1)
	return ch[p+1 : p+1+uint32(ch[p])]
}

// filter is l without the names keep refuses, in a new list (t's chunks
// are shared by strings of l until it is dropped).
func (l *nameList) filter(keep func(name string) bool) nameList {
	var t nameTable
	for k := 0; k < l.n; k++ {
		name := l.at(k)
		if keep(name) {
			t.append(name)
		}
	}
	return t.freeze()
}

// append stores s, known to be new, without the dedup table; t has room
// for it, as it held it before.
func (t *nameTable) append(s string) {
	_ = t.room(1 + len(s))
	push(t, s)
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
