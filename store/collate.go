package store

import (
	"net/netip"

	sqlite "modernc.org/sqlite"
)

// targetCollation is the SQLite collation that orders hosts as CompareHosts
// does: ResultsByTarget sorts with it (SQLite's sorter spills to disk, so a
// /8 is ordered in bounded memory).
const targetCollation = "fanout_host"

func init() { sqlite.MustRegisterCollationUtf8(targetCollation, CompareHosts) }

// CompareHosts orders hosts as people read them: addresses first, by value
// (IPv4, then IPv6, as target sets order them), then names in natural order,
// runs of digits compared as numbers (web2 before web10, as node sets
// expand). Distinct strings never compare equal (web01 and web1 are told
// apart bytewise), so that it is a total order two sorted streams can be
// merged on.
func CompareHosts(a, b string) int {
	if a == b {
		return 0
	}
	aa, aerr := netip.ParseAddr(a)
	ba, berr := netip.ParseAddr(b)
	switch {
	case aerr == nil && berr == nil:
		if c := aa.Compare(ba); c != 0 {
			return c
		}
	case aerr == nil:
		return -1
	case berr == nil:
		return 1
	default:
		if c := compareNatural(a, b); c != 0 {
			return c
		}
	}
	if a < b {
		return -1
	}
	return 1
}

// compareNatural compares a and b run by run: digits as numbers (leading
// zeros aside), the rest bytewise.
func compareNatural(a, b string) int {
	i, j := 0, 0
	for i < len(a) && j < len(b) {
		if isDigit(a[i]) && isDigit(b[j]) {
			i0, j0 := i, j
			for i < len(a) && isDigit(a[i]) {
				i++
			}
			for j < len(b) && isDigit(b[j]) {
				j++
			}
			na, nb := trimLeadingZeros(a[i0:i]), trimLeadingZeros(b[j0:j])
			if len(na) != len(nb) {
				return cmpInt(len(na), len(nb))
			}
			if na != nb {
				if na < nb {
					return -1
				}
				return 1
			}
			continue
		}
		if a[i] != b[j] {
			return cmpInt(int(a[i]), int(b[j]))
		}
		i++
		j++
	}
	return cmpInt(len(a)-i, len(b)-j)
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

func trimLeadingZeros(s string) string {
	for len(s) > 1 && s[0] == '0' {
		s = s[1:]
	}
	return s
}

func cmpInt(a, b int) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
