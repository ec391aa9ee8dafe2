package target

import (
	"errors"
	"fmt"
	"slices"
)

// Set operations between specs, as ClusterShell's nodeset writes them:
// "a,b" is the union, "a!b" the difference, "a&b" the intersection and
// "a^b" the symmetric difference, applied left to right without
// precedence: "n[1-9],m1!n5&n[4-6]" is ((n[1-9] ∪ m1) ∖ n5) ∩ n[4-6].

// setOps reports whether spec has an operator other than ',' outside
// brackets.
func setOps(spec string) bool {
	depth := 0
	for i := 0; i < len(spec); i++ {
		switch spec[i] {
		case '[':
			depth++
		case ']':
			depth--
		case '!', '&', '^':
			if depth == 0 {
				return true
			}
		}
	}
	return false
}

// operand is the value of one side of an operator: merged address spans
// and a table of names (entries included).
type operand struct {
	v4    []span4
	v6    []span6
	names nameTable
}

// addSetOps evaluates a spec with operators left to right and adds the
// result.
func (b *builder) addSetOps(spec string) error {
	var acc operand
	op := byte(',')
	depth, start := 0, 0
	for i := 0; i <= len(spec); i++ {
		c := byte(0)
		if i < len(spec) {
			c = spec[i]
		}
		switch c {
		case '[':
			depth++
			continue
		case ']':
			depth--
			continue
		case ',', '!', '&', '^', 0:
			if depth != 0 && c != 0 {
				continue
			}
		default:
			continue
		}
		part := spec[start:i]
		if part == "" {
			return parseErr(spec, fmt.Errorf("empty operand at byte %d (want a,b!c&d^e: union ',', difference '!', intersection '&', symmetric difference '^')", i))
		}
		if part[0] == '@' || part == "-" {
			return parseErr(spec, errors.New(part[:1]+" goes alone, not in a set operation"))
		}
		// A CIDR after '!' or '&' selects: its network and broadcast
		// addresses count (see ParseOptions.SkipNetworkBroadcast).
		v, err := b.operand(part, b.skipEdges && op != '!' && op != '&')
		if err != nil {
			return err
		}
		acc = combine(&acc, op, &v)
		op, start = c, i+1
	}
	b.v4 = append(b.v4, acc.v4...)
	b.v6 = append(b.v6, acc.v6...)
	var err error
	acc.names.each(func(_ uint32, name string) bool {
		if isEntry(name) {
			b.entries++
		}
		err = addName(b, name)
		return err == nil
	})
	if err != nil {
		return parseErr(spec, err)
	}
	return nil
}

// operand parses one side of an operator on its own.
func (b *builder) operand(part string, skipEdges bool) (operand, error) {
	sub := &builder{limit: b.limit, allowHuge: b.allowHuge, takes: b.takes, job: b.job, skipEdges: skipEdges}
	if err := sub.add(part); err != nil {
		return operand{}, err
	}
	sub.flush()
	return operand{v4: merge(sub.v4), v6: merge(sub.v6), names: sub.names}, nil
}

// combine is a op b.
func combine(a *operand, op byte, b *operand) operand {
	switch op {
	case ',':
		out := operand{v4: merge(slices.Concat(a.v4, b.v4)), v6: merge(slices.Concat(a.v6, b.v6)), names: a.names}
		b.names.each(func(_ uint32, name string) bool {
			_, _ = add(&out.names, name) // lengths were checked when b read them
			return true
		})
		return out
	case '!':
		return operand{v4: subtract(a.v4, b.v4), v6: subtract(a.v6, b.v6), names: namesWhere(&a.names, &b.names, false)}
	case '&':
		return operand{
			v4: subtract(a.v4, subtract(a.v4, b.v4)), v6: subtract(a.v6, subtract(a.v6, b.v6)),
			names: namesWhere(&a.names, &b.names, true),
		}
	default: // '^'
		ab, ba := combine(a, '!', b), combine(b, '!', a)
		return combine(&ab, ',', &ba)
	}
}

// namesWhere is the names of a that are (in true) or are not (in false)
// in b, in a's order.
func namesWhere(a, b *nameTable, in bool) nameTable {
	var out nameTable
	a.each(func(_ uint32, name string) bool {
		if has(b, name) == in {
			_, _ = add(&out, name)
		}
		return true
	})
	return out
}
