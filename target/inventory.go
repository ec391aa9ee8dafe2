package target

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"path"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// An Ansible inventory as a target source: @inventory.ini, @hosts.yml,
// or ReadInventory and Hosts for --inventory FILE --limit GROUP. Its
// hosts become host lines (web1 ansible_host=10.0.0.5 ansible_port=2222
// ansible_user=deploy), which Parse reads like any spec: the address,
// port and user reach the jobs that take them.

// Limits on an inventory, which is read whole: it is a description of a
// fleet, not a list of millions.
const (
	maxInventoryBytes = 64 << 20
	maxInventoryHosts = 1 << 20
	maxGroupDepth     = 256
)

// Inventory is a parsed Ansible inventory: its hosts in the order first
// seen, its groups, and the variables fanout uses (ansible_host,
// ansible_port, ansible_user, ansible_group_priority).
type Inventory struct {
	hosts  []*invHost
	byName map[string]*invHost
	groups map[string]*invGroup
	names  []string // group names in the order first seen
}

type invHost struct {
	name   string
	vars   map[string]string
	groups []*invGroup // direct
}

type invGroup struct {
	name     string
	hosts    []*invHost
	children []*invGroup
	parents  []*invGroup
	vars     map[string]string
	depth    int
}

// inventoryFormat says whether data named name is an inventory, and which
// form: by extension (.ini; .yml, .yaml), else by its first line that is
// not blank or a comment: a section header [group] (INI) or "---" or a
// key ending in ':' (YAML), as no list of targets has them. "" is a list
// of targets.
func inventoryFormat(name string, data []byte) string {
	switch strings.ToLower(filepath.Ext(name)) {
	case ".ini":
		return "ini"
	case ".yml", ".yaml":
		return "yaml"
	}
	for len(data) > 0 {
		line := data
		if i := bytes.IndexByte(data, '\n'); i >= 0 {
			line, data = data[:i], data[i+1:]
		} else {
			data = nil
		}
		s := strings.TrimSpace(string(line))
		if s == "" || s[0] == '#' || s[0] == ';' {
			continue
		}
		switch {
		case iniSection(s):
			return "ini"
		case s == "---" || yamlKey(s):
			return "yaml"
		}
		return ""
	}
	return ""
}

// iniSection reports whether s is [group], [group:vars] or
// [group:children], a group name being letters, digits, '_' and '-'
// starting with a letter or '_'.
func iniSection(s string) bool {
	if len(s) < 3 || s[0] != '[' || s[len(s)-1] != ']' {
		return false
	}
	name, kind, _ := strings.Cut(s[1:len(s)-1], ":")
	switch kind {
	case "", "vars", "children", "hosts":
	default:
		return false
	}
	return groupName(name)
}

func groupName(s string) bool {
	if s == "" || !(s[0] == '_' || s[0] >= 'a' && s[0] <= 'z' || s[0] >= 'A' && s[0] <= 'Z') {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c == '_' || c == '-' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

func yamlKey(s string) bool {
	k, ok := strings.CutSuffix(s, ":")
	return ok && groupName(k)
}

// ReadInventory reads an Ansible inventory, INI or YAML (see
// inventoryFormat), of at most 64 MiB and 1,048,576 hosts. name is used
// for the format and in errors.
func ReadInventory(r io.Reader, name string) (*Inventory, error) {
	data, err := io.ReadAll(io.LimitReader(r, maxInventoryBytes+1))
	if err != nil {
		return nil, fmt.Errorf("%s: read: %w", name, pathErr(err))
	}
	if len(data) > maxInventoryBytes {
		return nil, fmt.Errorf("%s: an inventory of more than %d MiB", name, maxInventoryBytes>>20)
	}
	inv := newInventory()
	switch inventoryFormat(name, data) {
	case "ini":
		err = inv.readINI(data, name)
	case "yaml":
		err = inv.readYAML(data, name)
	default:
		return nil, fmt.Errorf("%s: not an Ansible inventory (want an INI file of [group] sections or a YAML file with all:, named .ini, .yml or .yaml)", name)
	}
	if err != nil {
		return nil, err
	}
	if err := inv.finish(); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return inv, nil
}

func newInventory() *Inventory {
	inv := &Inventory{byName: map[string]*invHost{}, groups: map[string]*invGroup{}}
	inv.group("all")
	inv.group("ungrouped")
	return inv
}

func (inv *Inventory) group(name string) *invGroup {
	g := inv.groups[name]
	if g == nil {
		g = &invGroup{name: name, vars: map[string]string{}}
		inv.groups[name] = g
		inv.names = append(inv.names, name)
	}
	return g
}

// addHost adds host to group g (unless there) and merges vars into the
// host's own.
func (inv *Inventory) addHost(g *invGroup, name string, vars map[string]string) error {
	h := inv.byName[name]
	if h == nil {
		if len(inv.hosts) >= maxInventoryHosts {
			return fmt.Errorf("more than %d hosts", maxInventoryHosts)
		}
		h = &invHost{name: name, vars: map[string]string{}}
		inv.byName[name] = h
		inv.hosts = append(inv.hosts, h)
	}
	for k, v := range vars {
		h.vars[k] = v
	}
	if g != nil && (g.name == "all" || g.name == "ungrouped") {
		g = nil // finish puts the hosts of no other group in ungrouped
	}
	if g != nil && !slices.Contains(h.groups, g) {
		h.groups = append(h.groups, g)
		g.hosts = append(g.hosts, h)
	}
	return nil
}

func (inv *Inventory) addChild(parent, child *invGroup) error {
	if parent == child {
		return fmt.Errorf("group %s is its own child", parent.name)
	}
	if !slices.Contains(parent.children, child) {
		parent.children = append(parent.children, child)
		child.parents = append(child.parents, parent)
	}
	return nil
}

// finish links the groups as Ansible does: a group with no parent is a
// child of all, a host in no group but all is in ungrouped; depths (the
// longest path from all) order the variables of a host's groups.
func (inv *Inventory) finish() error {
	all, ungrouped := inv.groups["all"], inv.groups["ungrouped"]
	for _, name := range inv.names {
		g := inv.groups[name]
		if g != all && len(g.parents) == 0 {
			if err := inv.addChild(all, g); err != nil {
				return err
			}
		}
	}
	for _, h := range inv.hosts {
		if len(h.groups) == 0 {
			h.groups = append(h.groups, ungrouped)
			ungrouped.hosts = append(ungrouped.hosts, h)
		}
	}
	// A cycle of children has no way in from all: look for one first.
	state := map[*invGroup]int{} // 1 on the path, 2 done
	var cycle func(g *invGroup) error
	cycle = func(g *invGroup) error {
		switch state[g] {
		case 1:
			return fmt.Errorf("group %s: a cycle of children", g.name)
		case 2:
			return nil
		}
		state[g] = 1
		for _, c := range g.children {
			if err := cycle(c); err != nil {
				return err
			}
		}
		state[g] = 2
		return nil
	}
	for _, name := range inv.names {
		if err := cycle(inv.groups[name]); err != nil {
			return err
		}
	}
	var walk func(g *invGroup, depth int) error
	walk = func(g *invGroup, depth int) error {
		if depth > maxGroupDepth {
			return fmt.Errorf("group %s: children nested more than %d deep", g.name, maxGroupDepth)
		}
		if depth < g.depth {
			return nil
		}
		g.depth = depth
		for _, c := range g.children {
			if err := walk(c, depth+1); err != nil {
				return err
			}
		}
		return nil
	}
	return walk(all, 0)
}

// readINI reads Ansible's INI form: host lines before any section are
// ungrouped; [group] holds host lines (HOST [key=value ...], HOST may be
// host:port and hold ranges such as web[01:20] or db-[a:f]); [group:vars]
// holds key=value lines; [group:children] names child groups.
func (inv *Inventory) readINI(data []byte, name string) error {
	group, kind := inv.groups["ungrouped"], ""
	lines := strings.Split(string(data), "\n")
	for n, line := range lines {
		line = strings.TrimSpace(strings.TrimPrefix(line, "\ufeff"))
		if line == "" || line[0] == '#' || line[0] == ';' {
			continue
		}
		at := func(err error) error { return fmt.Errorf("%s:%d: %w", name, n+1, err) }
		if line[0] == '[' {
			sec, ok := strings.CutSuffix(line, "]")
			if !ok {
				return at(fmt.Errorf("section %q: want [group], [group:vars] or [group:children]", line))
			}
			gname, k, _ := strings.Cut(sec[1:], ":")
			if !iniSection(line) {
				return at(fmt.Errorf("section %q: want [group], [group:vars] or [group:children] (a group name is letters, digits, '_' and '-')", line))
			}
			group, kind = inv.group(gname), k
			continue
		}
		switch kind {
		case "", "hosts":
			if err := inv.iniHost(group, line); err != nil {
				return at(err)
			}
		case "vars":
			k, v, ok := strings.Cut(line, "=")
			if !ok {
				return at(fmt.Errorf("%q in [%s:vars]: want key=value", line, group.name))
			}
			group.vars[strings.TrimSpace(k)] = iniValue(strings.TrimSpace(v))
		case "children":
			if !groupName(line) {
				return at(fmt.Errorf("%q in [%s:children]: want a group name", line, group.name))
			}
			if err := inv.addChild(group, inv.group(line)); err != nil {
				return at(err)
			}
		}
	}
	return nil
}

// iniHost reads one host line.
func (inv *Inventory) iniHost(g *invGroup, line string) error {
	fields, err := splitShell(line)
	if err != nil {
		return err
	}
	vars := map[string]string{}
	for _, f := range fields[1:] {
		k, v, ok := strings.Cut(f, "=")
		if !ok {
			return fmt.Errorf("%q: want key=value after the host", f)
		}
		vars[k] = iniValue(v)
	}
	pattern, port, err := hostPort(fields[0])
	if err != nil {
		return err
	}
	if port != "" {
		vars[varPort] = port
	}
	names, err := expandHostRange(pattern)
	if err != nil {
		return err
	}
	for _, h := range names {
		if err := inv.addHost(g, h, vars); err != nil {
			return err
		}
	}
	return nil
}

// iniValue is a value as Ansible's INI reader keeps it: without its quotes.
func iniValue(v string) string {
	if len(v) >= 2 && (v[0] == '"' || v[0] == '\'') && v[len(v)-1] == v[0] {
		return v[1 : len(v)-1]
	}
	return v
}

// splitShell splits a host line at spaces outside quotes, dropping a
// trailing '#' comment, as Ansible's shlex split does.
func splitShell(s string) ([]string, error) {
	var out []string
	var cur strings.Builder
	var quote byte
	in := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case quote != 0:
			if c == quote {
				quote = 0
			} else {
				cur.WriteByte(c)
			}
		case c == '"' || c == '\'':
			quote, in = c, true
		case c == ' ' || c == '\t':
			if in {
				out = append(out, cur.String())
				cur.Reset()
				in = false
			}
		case c == '#' && !in:
			i = len(s)
		default:
			cur.WriteByte(c)
			in = true
		}
	}
	if quote != 0 {
		return nil, fmt.Errorf("%q: unclosed quote", s)
	}
	if in {
		out = append(out, cur.String())
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%q: no host", s)
	}
	return out, nil
}

// hostPort splits host:port off an inventory host pattern, as Ansible
// does: one colon outside brackets before digits, or [v6]:port; an IPv6
// address alone keeps its colons.
func hostPort(s string) (host, port string, err error) {
	if strings.HasPrefix(s, "[") {
		if inner, prefix, ok := bracketed6(s); ok {
			if prefix == "" {
				return inner, "", nil
			}
		}
		if i := strings.Index(s, "]:"); i > 0 && strings.Contains(s[1:i], ":") {
			return s[1:i], s[i+2:], checkPort(s[i+2:], s)
		}
	}
	if _, err := netip.ParseAddr(s); err == nil {
		return s, "", nil
	}
	h, p, ok := splitPort(s)
	if !ok {
		return s, "", nil
	}
	return h, p, checkPort(p, s)
}

func checkPort(p, s string) error {
	if _, err := parsePort(p); err != nil {
		return fmt.Errorf("host %q: %w", s, err)
	}
	return nil
}

// expandHostRange expands Ansible's host ranges: [01:20] (the width of the
// start, which must equal the end's), [a:f], [1:20:5]; several multiply.
func expandHostRange(s string) ([]string, error) {
	open := strings.IndexByte(s, '[')
	if open < 0 {
		return []string{s}, nil
	}
	end := strings.IndexByte(s[open:], ']')
	if end < 0 {
		return nil, fmt.Errorf("host %q: unclosed '['", s)
	}
	end += open
	rng := s[open+1 : end]
	parts := strings.Split(rng, ":")
	if len(parts) < 2 || len(parts) > 3 {
		return nil, fmt.Errorf("host %q: want a range [01:20], [a:f] or [1:20:5]", s)
	}
	beg, last := parts[0], parts[1]
	step := 1
	if len(parts) == 3 {
		var err error
		if step, err = strconv.Atoi(parts[2]); err != nil || step < 1 {
			return nil, fmt.Errorf("host %q: step %q is not a positive number", s, parts[2])
		}
	}
	var items []string
	switch {
	case len(beg) == 1 && len(last) == 1 && isLetter(beg[0]) && isLetter(last[0]):
		if beg[0] > last[0] {
			return nil, fmt.Errorf("host %q: range end before start", s)
		}
		for c := int(beg[0]); c <= int(last[0]); c += step {
			items = append(items, string(rune(c)))
		}
	default:
		if beg == "" {
			beg = "0"
		}
		if !onlyDigits(beg) || !onlyDigits(last) || last == "" || len(beg) > maxDigits || len(last) > maxDigits {
			return nil, fmt.Errorf("host %q: want a range [01:20], [a:f] or [1:20:5]", s)
		}
		width := 0
		if len(beg) > 1 && beg[0] == '0' {
			if len(beg) != len(last) {
				return nil, fmt.Errorf("host %q: a padded range's start and end have one width, as in [01:20]", s)
			}
			width = len(beg)
		}
		lo, _ := strconv.ParseUint(beg, 10, 64)
		hi, _ := strconv.ParseUint(last, 10, 64)
		if hi < lo {
			return nil, fmt.Errorf("host %q: range end before start", s)
		}
		if (hi-lo)/uint64(step) >= maxInventoryHosts {
			return nil, fmt.Errorf("host %q: more than %d hosts", s, maxInventoryHosts)
		}
		for v := lo; v <= hi; v += uint64(step) {
			items = append(items, string(appendPadded(nil, v, width)))
		}
	}
	rest, err := expandHostRange(s[end+1:])
	if err != nil {
		return nil, err
	}
	if len(items)*len(rest) > maxInventoryHosts {
		return nil, fmt.Errorf("host %q: more than %d hosts", s, maxInventoryHosts)
	}
	out := make([]string, 0, len(items)*len(rest))
	for _, it := range items {
		for _, r := range rest {
			out = append(out, s[:open]+it+r)
		}
	}
	return out, nil
}

func isLetter(c byte) bool { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }

// readYAML reads Ansible's YAML form: top-level groups (all, usually),
// each a mapping of hosts, vars and children (groups of the same form).
func (inv *Inventory) readYAML(data []byte, name string) error {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	if len(doc.Content) == 0 {
		return nil // empty
	}
	root := doc.Content[0]
	if root.Kind == yaml.ScalarNode && root.Tag == "!!null" {
		return nil
	}
	if root.Kind != yaml.MappingNode {
		return fmt.Errorf("%s:%d: want a mapping of groups (all:)", name, root.Line)
	}
	for i := 0; i+1 < len(root.Content); i += 2 {
		if err := inv.yamlGroup(nil, root.Content[i], root.Content[i+1], name, 0); err != nil {
			return err
		}
	}
	return nil
}

func (inv *Inventory) yamlGroup(parent *invGroup, key, body *yaml.Node, file string, depth int) error {
	at := func(n *yaml.Node, format string, a ...any) error {
		return fmt.Errorf("%s:%d: %s", file, n.Line, fmt.Sprintf(format, a...))
	}
	if depth > maxGroupDepth {
		return at(key, "groups nested more than %d deep", maxGroupDepth)
	}
	if key.Kind != yaml.ScalarNode || !groupName(key.Value) {
		return at(key, "group %q: a group name is letters, digits, '_' and '-'", key.Value)
	}
	g := inv.group(key.Value)
	if parent != nil {
		if err := inv.addChild(parent, g); err != nil {
			return at(key, "%v", err)
		}
	}
	if body.Kind == yaml.ScalarNode && (body.Tag == "!!null" || body.Value == "") {
		return nil
	}
	if body.Kind != yaml.MappingNode {
		return at(body, "group %s: want a mapping of hosts, vars and children", g.name)
	}
	for i := 0; i+1 < len(body.Content); i += 2 {
		k, v := body.Content[i], body.Content[i+1]
		switch k.Value {
		case "hosts":
			if isNull(v) {
				continue
			}
			if v.Kind != yaml.MappingNode {
				return at(v, "hosts of %s: want a mapping of host: vars", g.name)
			}
			for j := 0; j+1 < len(v.Content); j += 2 {
				hk, hv := v.Content[j], v.Content[j+1]
				vars, err := yamlVars(hv)
				if err != nil {
					return at(hv, "host %s: %v", hk.Value, err)
				}
				pattern, port, err := hostPort(hk.Value)
				if err != nil {
					return at(hk, "%v", err)
				}
				if port != "" {
					vars[varPort] = port
				}
				names, err := expandHostRange(pattern)
				if err != nil {
					return at(hk, "%v", err)
				}
				for _, h := range names {
					if err := inv.addHost(g, h, vars); err != nil {
						return at(hk, "%v", err)
					}
				}
			}
		case "vars":
			vars, err := yamlVars(v)
			if err != nil {
				return at(v, "vars of %s: %v", g.name, err)
			}
			for k, val := range vars {
				g.vars[k] = val
			}
		case "children":
			if isNull(v) {
				continue
			}
			if v.Kind != yaml.MappingNode {
				return at(v, "children of %s: want a mapping of groups", g.name)
			}
			for j := 0; j+1 < len(v.Content); j += 2 {
				if err := inv.yamlGroup(g, v.Content[j], v.Content[j+1], file, depth+1); err != nil {
					return err
				}
			}
		default:
			return at(k, "group %s: %q is not hosts, vars or children", g.name, k.Value)
		}
	}
	return nil
}

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && (n.Tag == "!!null" || n.Value == "")
}

// yamlVars reads a mapping of variables, keeping the scalars (the ones
// fanout uses are scalars) as their text.
func yamlVars(n *yaml.Node) (map[string]string, error) {
	vars := map[string]string{}
	if isNull(n) {
		return vars, nil
	}
	if n.Kind != yaml.MappingNode {
		return nil, errors.New("want a mapping of variables")
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if v := n.Content[i+1]; v.Kind == yaml.ScalarNode {
			vars[n.Content[i].Value] = v.Value
		}
	}
	return vars, nil
}

// vars is what Ansible makes of a host's variables: those of its groups
// and their ancestors, all first, by depth, then ansible_group_priority,
// then name, each overriding the ones before; then the host's own.
func (inv *Inventory) vars(h *invHost) map[string]string {
	seen := map[*invGroup]bool{}
	var gs []*invGroup
	var up func(g *invGroup)
	up = func(g *invGroup) {
		if seen[g] {
			return
		}
		seen[g] = true
		gs = append(gs, g)
		for _, p := range g.parents {
			up(p)
		}
	}
	for _, g := range h.groups {
		up(g)
	}
	up(inv.groups["all"])
	prio := func(g *invGroup) int {
		p, err := strconv.Atoi(g.vars["ansible_group_priority"])
		if err != nil {
			return 1
		}
		return p
	}
	sort.SliceStable(gs, func(a, b int) bool {
		if gs[a].depth != gs[b].depth {
			return gs[a].depth < gs[b].depth
		}
		if pa, pb := prio(gs[a]), prio(gs[b]); pa != pb {
			return pa < pb
		}
		return gs[a].name < gs[b].name
	})
	out := map[string]string{}
	for _, g := range gs {
		for k, v := range g.vars {
			out[k] = v
		}
	}
	for k, v := range h.vars {
		out[k] = v
	}
	return out
}

// Hosts returns the host lines of the hosts that limit selects, in the
// order the inventory first names them. limit is Ansible's --limit: a
// comma- (or colon-) separated list of patterns, each a group or host
// name, all, or a glob (web*); a pattern starting with '&' keeps only the
// hosts it also selects, one starting with '!' removes them. No limit is
// all.
func (inv *Inventory) Hosts(limit string) ([]string, error) {
	sel, err := inv.selection(limit)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, h := range inv.hosts {
		if sel[h] {
			line, err := inv.hostLine(h)
			if err != nil {
				return nil, err
			}
			out = append(out, line)
		}
	}
	return out, nil
}

// hostLine is h as a spec: its name, then ansible_host, ansible_port and
// ansible_user when set.
func (inv *Inventory) hostLine(h *invHost) (string, error) {
	v := inv.vars(h)
	if strings.ContainsAny(h.name, " \t") {
		return "", fmt.Errorf("host %q: a host name has no spaces", h.name)
	}
	line := h.name
	for _, k := range []string{varHost, varPort, varUser} {
		val := strings.TrimSpace(v[k])
		if strings.ContainsAny(val, " \t") {
			return "", fmt.Errorf("host %s: %s %q has a space", h.name, k, val)
		}
		if val != "" {
			line += " " + k + "=" + val
		}
	}
	return line, nil
}

// members is the hosts of group g and of its descendants.
func (inv *Inventory) members(g *invGroup, into map[*invHost]bool, seen map[*invGroup]bool) {
	if seen[g] {
		return
	}
	seen[g] = true
	if g.name == "all" {
		for _, h := range inv.hosts {
			into[h] = true
		}
		return
	}
	for _, h := range g.hosts {
		into[h] = true
	}
	for _, c := range g.children {
		inv.members(c, into, seen)
	}
}

// match is the hosts one pattern selects.
func (inv *Inventory) match(p string) (map[*invHost]bool, error) {
	out := map[*invHost]bool{}
	if g := inv.groups[p]; g != nil {
		inv.members(g, out, map[*invGroup]bool{})
		return out, nil
	}
	if h := inv.byName[p]; h != nil {
		out[h] = true
		return out, nil
	}
	if p == "*" {
		p = "all"
		inv.members(inv.groups["all"], out, map[*invGroup]bool{})
		return out, nil
	}
	if strings.ContainsAny(p, "*?[") {
		if _, err := path.Match(p, ""); err != nil {
			return nil, fmt.Errorf("--limit pattern %q: %w", p, err)
		}
		for _, name := range inv.names {
			if ok, _ := path.Match(p, name); ok {
				inv.members(inv.groups[name], out, map[*invGroup]bool{})
			}
		}
		for _, h := range inv.hosts {
			if ok, _ := path.Match(p, h.name); ok {
				out[h] = true
			}
		}
		return out, nil
	}
	return out, nil
}

func (inv *Inventory) selection(limit string) (map[*invHost]bool, error) {
	sel := map[*invHost]bool{}
	if strings.TrimSpace(limit) == "" {
		limit = "all"
	}
	var ands, nots []map[*invHost]bool
	matched := false
	for _, p := range strings.FieldsFunc(limit, func(r rune) bool { return r == ',' || r == ':' }) {
		p = strings.TrimSpace(p)
		op := byte(0)
		if p != "" && (p[0] == '!' || p[0] == '&') {
			op, p = p[0], p[1:]
		}
		if p == "" {
			return nil, fmt.Errorf("--limit %q: empty pattern", limit)
		}
		m, err := inv.match(p)
		if err != nil {
			return nil, err
		}
		switch op {
		case '!':
			nots = append(nots, m)
		case '&':
			ands = append(ands, m)
		default:
			matched = true
			for h := range m {
				sel[h] = true
			}
		}
	}
	if !matched { // only & and ! patterns: they apply to all
		inv.members(inv.groups["all"], sel, map[*invGroup]bool{})
	}
	for h := range sel {
		for _, m := range ands {
			if !m[h] {
				delete(sel, h)
			}
		}
		for _, m := range nots {
			if m[h] {
				delete(sel, h)
			}
		}
	}
	return sel, nil
}

// Groups returns the names of the inventory's groups, all and ungrouped
// first, then in the order first seen.
func (inv *Inventory) Groups() []string { return slices.Clone(inv.names) }

// eachInventoryHost calls fn with the host line of every host of the
// inventory r (all of them: @FILE takes no limit).
func eachInventoryHost(r io.Reader, name string, fn func(spec string) error) error {
	inv, err := ReadInventory(r, name)
	if err != nil {
		return err
	}
	hosts, err := inv.Hosts("")
	if err != nil {
		return err
	}
	for _, h := range hosts {
		if err := fn(h); err != nil {
			return fmt.Errorf("%s: host %w", name, err)
		}
	}
	return nil
}
