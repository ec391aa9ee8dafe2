package cli

import (
	"testing"

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
