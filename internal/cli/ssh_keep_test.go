package cli

import (
	"testing"
	"time"

	"github.com/spf13/pflag"
)

// The flags of a repeated ssh job (fanout watch ssh): connections kept by
// default, as many as -c; --reconnect keeps none; --max-connections bounds.
func TestSSHKeepFlags(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		args []string
		keep bool
		max  int
	}{
		{nil, true, 300},
		{[]string{"--max-connections", "50"}, true, 50},
		{[]string{"--reconnect"}, false, 300},
	} {
		s := &sshFlags{}
		fl := pflag.NewFlagSet("watch ssh", pflag.ContinueOnError)
		s.addKeepFlags(fl)
		if err := fl.Parse(tc.args); err != nil {
			t.Fatal(err)
		}
		s.keep(300)
		if s.cfg.KeepConnections != tc.keep || s.cfg.MaxConnections != tc.max {
			t.Errorf("%q with -c 300: keep %v, max %d; want %v, %d", tc.args, s.cfg.KeepConnections, s.cfg.MaxConnections, tc.keep, tc.max)
		}
	}
}

// A connection kept between rounds every apart must outlive the gap between
// two turns of its host (up to two intervals, with --spread): the pool's
// idle timeout is the default 15 minutes, or two intervals when longer.
func TestSSHKeepIdle(t *testing.T) {
	t.Parallel()
	for every, want := range map[time.Duration]time.Duration{
		30 * time.Second: 15 * time.Minute,
		5 * time.Minute:  15 * time.Minute,
		10 * time.Minute: 20 * time.Minute,
		time.Hour:        2 * time.Hour,
	} {
		if got := keepIdle(every); got != want {
			t.Errorf("keepIdle(%v) = %v, want %v", every, got, want)
		}
	}
}
