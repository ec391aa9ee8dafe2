package sshconfig

import (
	"fmt"
	"io"
	"strconv"
	"strings"
)

// Dump writes r as `ssh -G` does, for the keywords fanout uses: lower-case
// keywords, OpenSSH's value forms. kex is the key exchange list fanout
// uses for the host.
func (r *Resolved) Dump(w io.Writer, kex []string) {
	p := func(k, v string) { fmt.Fprintf(w, "%s %s\n", k, v) }
	p("host", r.Alias)
	p("user", r.User)
	p("hostname", r.HostName)
	p("port", strconv.Itoa(r.Port))
	p("batchmode", yesNo(r.BatchMode))
	p("hashknownhosts", yesNo(r.HashKnownHosts))
	p("identitiesonly", yesNo(r.IdentitiesOnly))
	p("stricthostkeychecking", strictForm(r.StrictHostKeyChecking.Value))
	if r.HostKeyAlias != "" {
		p("hostkeyalias", r.HostKeyAlias)
	}
	p("kexalgorithms", strings.Join(kex, ","))
	for _, id := range r.IdentityRaw {
		p("identityfile", id.Value)
	}
	p("globalknownhostsfile", noneList(r.GlobalKnownHosts))
	p("userknownhostsfile", noneList(r.UserKnownHosts))
	switch {
	case r.TimeoutNone || !r.TimeoutSet:
		p("connecttimeout", "none")
	default:
		p("connecttimeout", strconv.Itoa(int(r.ConnectTimeout.Seconds())))
	}
	switch {
	case len(r.Jumps) > 0:
		// As ssh -G: the hops before the last as written, the last as read.
		v := r.Jumps[len(r.Jumps)-1].String()
		if i := strings.LastIndexByte(r.JumpRaw, ','); i > 0 {
			v = r.JumpRaw[:i] + "," + v
		}
		p("proxyjump", v)
	case r.ProxyCommand.Value != "":
		p("proxycommand", r.ProxyCommand.Value)
	}
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

// strictForm is how ssh -G prints StrictHostKeyChecking (default ask).
func strictForm(v string) string {
	switch strings.ToLower(v) {
	case "yes", "true":
		return "true"
	case "no", "false", "off":
		return "false"
	case "accept-new":
		return "accept-new"
	}
	return "ask"
}

func noneList(files []string) string {
	if len(files) == 0 {
		return "none"
	}
	return strings.Join(files, " ")
}
