package ssh

import (
	"fmt"
	"io"

	"github.com/fanout/fanout/job/ssh/internal/hostkeys"
	"github.com/fanout/fanout/target"
)

// PrintConfig writes, for each target, what the job would resolve for it
// from c's ssh config and flags, in `ssh -G`'s form (the keywords fanout
// uses, lower case, OpenSSH's value forms), without reading keys or
// connecting. A target whose config fanout cannot honour is an error
// naming the file and line.
func PrintConfig(w io.Writer, c Config, env Env, targets []target.Target) error {
	c.Command = "true" // not run
	if err := c.validate(); err != nil {
		return err
	}
	if env.Warn == nil {
		env.Warn = io.Discard
	}
	conf, err := loadSSHConfig(&c, env)
	if err != nil {
		return err
	}
	j := &Job{cfg: c, env: env, conf: conf, dbs: map[string]*hostkeys.DB{}, warned: map[string]bool{}}
	defer j.closeHostKeys()
	for _, t := range targets {
		hs, err := j.settings(t)
		if err != nil {
			return fmt.Errorf("%s: %w", t.Spec(), err)
		}
		r, _ := j.conf.Resolve(j.query(t))
		shown := *r
		if len(hs.jumps) > 0 && c.ProxyJump != "" {
			shown.Jumps, shown.JumpRaw = hs.jumps, c.ProxyJump
		}
		if c.HostKey != "" {
			shown.StrictHostKeyChecking.Value = map[string]string{HostKeyStrict: "yes", HostKeyAcceptNew: "accept-new", HostKeyOff: "no"}[c.HostKey]
		}
		if len(c.KnownHosts) > 0 {
			shown.UserKnownHosts = nil
			for _, f := range c.KnownHosts {
				shown.UserKnownHosts = append(shown.UserKnownHosts, expandTilde(f, env.Home))
			}
		}
		if !r.GlobalSet {
			shown.GlobalKnownHosts = defaultGlobalKnownHosts
		}
		shown.Dump(w, hs.kex)
	}
	return nil
}
