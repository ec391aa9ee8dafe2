package report

import (
	"context"
	"net/netip"
	"sort"
	"strings"

	"github.com/fanout/fanout/job"
	"github.com/fanout/fanout/store"
	"github.com/fanout/fanout/target"
)

// Bounds of the not-up groups: a /8 that is all down is 65,536 /24s of 256
// hosts; the page shows the largest groups and counts the rest.
const (
	maxGroups        = 4096 // groups tracked; later ones are counted as Other
	maxGroupHosts    = 1024 // hosts folded per group; the rest are counted
	shownPerClass    = 12
	maxGroupHostsLen = 400 // characters of a group's folded hosts shown
)

// NotUpGroup is the targets that were not up for one class, in one /24 (an
// IPv6 /120, or the names that share a node-set prefix), folded as a node
// set.
type NotUpGroup struct {
	Class  string
	Group  string // "10.1.2.0/24", "fd00::/120", "web"
	Count  uint64
	Hosts  string // folded (target.Fold)
	Partly bool   // Hosts has only the first maxGroupHosts of Count
	names  []string
}

// NotUpClass is the targets of one class that were not up, in groups.
type NotUpClass struct {
	Class       string
	Count       uint64
	Groups      []NotUpGroup // the largest, at most shownPerClass
	MoreGroups  int          // groups not shown
	MoreTargets uint64       // targets in them
}

// NotUp is every target that was not up, by class (largest first), then by
// /24 or node-set prefix (largest first).
type NotUp struct {
	Classes []NotUpClass
	// Untracked counts targets of groups past maxGroups (a huge sweep with
	// targets down everywhere), counted in their class but in no group.
	Untracked uint64
}

// hostGroup is the group of a host: its /24 (IPv4), /120 (IPv6), or its
// node-set prefix (the name up to its first digit).
func hostGroup(host string) string {
	if a, err := netip.ParseAddr(host); err == nil {
		a = a.Unmap().WithZone("")
		bits := 24
		if a.Is6() {
			bits = 120
		}
		p, _ := a.Prefix(bits)
		return p.String()
	}
	if i := strings.IndexAny(host, "0123456789"); i > 0 {
		return host[:i]
	}
	return host
}

// notUp groups sweep id's targets that were not up, in one streaming pass.
func notUp(ctx context.Context, st *store.Store, id int64) (NotUp, error) {
	groups := map[[2]string]*NotUpGroup{}
	classTotal := map[string]uint64{}
	var out NotUp
	err := st.Results(ctx, id, store.Query{Status: []job.Status{job.Down, job.Error}}, func(r job.Result) error {
		class := string(r.Class)
		if class == "" {
			class = string(r.Status)
		}
		classTotal[class]++
		k := [2]string{class, hostGroup(r.Host)}
		g, ok := groups[k]
		if !ok {
			if len(groups) >= maxGroups {
				out.Untracked++
				return nil
			}
			g = &NotUpGroup{Class: class, Group: k[1]}
			groups[k] = g
		}
		g.Count++
		if len(g.names) < maxGroupHosts {
			g.names = append(g.names, r.Host)
		} else {
			g.Partly = true
		}
		return nil
	})
	if err != nil {
		return out, err
	}
	byClass := map[string][]*NotUpGroup{}
	for _, g := range groups {
		byClass[g.Class] = append(byClass[g.Class], g)
	}
	for class, gs := range byClass {
		sort.Slice(gs, func(i, j int) bool {
			if gs[i].Count != gs[j].Count {
				return gs[i].Count > gs[j].Count
			}
			return store.CompareHosts(gs[i].Group, gs[j].Group) < 0
		})
		c := NotUpClass{Class: class, Count: classTotal[class]}
		for i, g := range gs {
			if i >= shownPerClass {
				c.MoreGroups++
				c.MoreTargets += g.Count
				continue
			}
			g.Hosts = cut(target.Fold(g.names), maxGroupHostsLen)
			g.names = nil
			c.Groups = append(c.Groups, *g)
		}
		out.Classes = append(out.Classes, c)
	}
	sort.Slice(out.Classes, func(i, j int) bool {
		if out.Classes[i].Count != out.Classes[j].Count {
			return out.Classes[i].Count > out.Classes[j].Count
		}
		return out.Classes[i].Class < out.Classes[j].Class
	})
	return out, nil
}
