package exec

import (
	"strconv"
	"strings"

	"github.com/fanout/fanout/target"
)

type placeholder uint8

const (
	phNone placeholder = iota
	phHost
	phAddr
	phPort
	phIndex
)

var placeholders = []struct {
	text string
	ph   placeholder
}{
	{"{}", phHost}, {"{host}", phHost}, {"{addr}", phAddr}, {"{port}", phPort}, {"{index}", phIndex},
}

// seg is a piece of an argument: literal text, or a placeholder.
type seg struct {
	lit string
	ph  placeholder
}

// parse splits an argument into segments once, so that Run only joins them.
func parse(arg string) []seg {
	var segs []seg
	lit := 0
	for i := 0; i < len(arg); {
		if arg[i] != '{' {
			i++
			continue
		}
		matched := false
		for _, p := range placeholders {
			if strings.HasPrefix(arg[i:], p.text) {
				if i > lit {
					segs = append(segs, seg{lit: arg[lit:i]})
				}
				segs = append(segs, seg{ph: p.ph})
				i += len(p.text)
				lit = i
				matched = true
				break
			}
		}
		if !matched {
			i++
		}
	}
	if lit < len(arg) || len(segs) == 0 {
		segs = append(segs, seg{lit: arg[lit:]})
	}
	return segs
}

// expand substitutes t into an argument; arg is returned as is when it has
// no placeholder (no allocation on the common literal arguments).
func expand(arg string, segs []seg, t target.Target) string {
	if len(segs) == 1 {
		switch segs[0].ph {
		case phNone:
			return arg
		default:
			return value(segs[0].ph, t)
		}
	}
	var b strings.Builder
	for _, s := range segs {
		if s.ph == phNone {
			b.WriteString(s.lit)
		} else {
			b.WriteString(value(s.ph, t))
		}
	}
	return b.String()
}

func value(p placeholder, t target.Target) string {
	switch p {
	case phHost:
		return t.Name()
	case phAddr:
		if t.Addr.IsValid() {
			return t.Addr.String()
		}
		return ""
	case phPort:
		if t.Port == 0 {
			return ""
		}
		return strconv.Itoa(int(t.Port))
	case phIndex:
		return strconv.FormatUint(t.Index, 10)
	}
	return ""
}
