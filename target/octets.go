package target

import (
	"fmt"
	"strings"
)

// nmap's octet ranges: each of the four octets of an IPv4 address may be a
// number, a range a-b, an open range a- or -b, '-' or '*' (0-255), or a
// comma-separated list of those: 127.0.1-3.5, 127.0.0.*, 10.0-3.0.1-254,
// 127.0.0.1,3-4. The set is the product of the four octets' sets. Octets
// are decimal, as in nmap; a leading zero is refused here as everywhere
// (nmap reads 010 as ten, inet_aton as eight).

// octetRanges reports whether s is written in nmap's octet form rather than
// as an address (10.0.0.1) or a range of whole addresses (10.0.0.1-10.0.0.9):
// four dot-separated fields of digits, '-', ',' and '*', not a plain
// address.
func octetRanges(s string) bool {
	if strings.Count(s, ".") != 3 || !strings.ContainsAny(s, "-,*") {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < '0' || c > '9') && c != '.' && c != '-' && c != ',' && c != '*' {
			return false
		}
	}
	return true
}

// octetSet is one octet's values: sorted, merged ranges.
type octetSet []span[u32]

func (o octetSet) size() uint64 {
	n := uint64(0)
	for _, r := range o {
		n += uint64(r.hi-r.lo) + 1
	}
	return n
}

// parseOctetField reads one field: "5", "1-3", "-3", "250-", "-", "*",
// "1,3-4".
func parseOctetField(f string) (octetSet, error) {
	if f == "" {
		return nil, fmt.Errorf("empty octet (want a.b.c.d where each octet is a number, a-b, * or a list 1,3-5)")
	}
	var out []span[u32]
	for _, it := range strings.Split(f, ",") {
		var lo, hi uint8 = 0, 255
		switch los, his, isRange := strings.Cut(it, "-"); {
		case it == "":
			return nil, fmt.Errorf("octet %q: empty item in a list (want 1,3-5)", f)
		case it == "*":
		case strings.Contains(it, "*"):
			return nil, fmt.Errorf("octet %q: '*' stands alone for 0-255", it)
		case !isRange:
			o, err := parseOctet(it)
			if err != nil {
				return nil, err
			}
			lo, hi = o, o
		default:
			if strings.Contains(his, "-") {
				return nil, fmt.Errorf("octet %q: want one '-' (a-b, a-, -b)", it)
			}
			var err error
			if los != "" {
				if lo, err = parseOctet(los); err != nil {
					return nil, err
				}
			}
			if his != "" {
				if hi, err = parseOctet(his); err != nil {
					return nil, err
				}
			}
			if hi < lo {
				return nil, fmt.Errorf("octet range %q: range end before start", it)
			}
		}
		out = append(out, span[u32]{u32(lo), u32(hi)})
	}
	return octetSet(merge(out)), nil
}

// addOctets adds the addresses of an octet-range spec, as spans: one per
// run of consecutive addresses, so 10.0.*.* is one span and 10.0-3.0.1-254
// is four. The count is checked against the limit before any span is made.
func (b *builder) addOctets(s string) error {
	var oct [4]octetSet
	count := uint64(1)
	for k, f := range strings.Split(s, ".") {
		o, err := parseOctetField(f)
		if err != nil {
			return err
		}
		oct[k] = o
		count *= o.size() // at most 2^32
	}
	// The spans to make: an octet that is whole (0-255) joins the spans of
	// the octets to its right into one. Over the limit, the count is too.
	spans, whole := uint64(1), true
	for k := 3; k >= 0; k-- {
		if whole {
			spans = uint64(len(oct[k]))
		} else {
			spans *= oct[k].size()
		}
		whole = whole && oct[k].size() == 256
	}
	if spans > b.limit {
		return tooMany(fmt.Sprint(count), b.limit)
	}
	b.octetSpans(&oct, 0, 0)
	return nil
}

// octetSpans adds the spans of octets k..3 under base: one span per range
// of octet k when the octets to its right are whole, else one walk per
// value, so the work is the number of spans made.
func (b *builder) octetSpans(oct *[4]octetSet, k int, base u32) {
	shift := 8 * (3 - k)
	restWhole := true
	for j := k + 1; j < 4; j++ {
		restWhole = restWhole && oct[j].size() == 256
	}
	low := u32(1)<<shift - 1
	for _, r := range oct[k] {
		if restWhole {
			b.v4 = appendSpan(b.v4, span4{base | r.lo<<shift, base | r.hi<<shift | low})
			continue
		}
		for v := r.lo; v <= r.hi; v++ {
			b.octetSpans(oct, k+1, base|v<<shift)
		}
	}
}
