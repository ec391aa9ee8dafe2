package cli

import "github.com/spf13/cobra"

// shells are those `fanout completion SHELL` writes a script for (cobra's).
const shells = "bash, zsh, fish or powershell"

// addCompletion adds cobra's `fanout completion SHELL` now, as ExecuteC
// would, once root's streams are set (the scripts go to root's stdout), and
// makes a missing or unknown shell a usage error (exit 2), not the help
// with exit 0.
func addCompletion(root *cobra.Command, args []string) {
	root.InitDefaultCompletionCmd(args...)
	for _, c := range root.Commands() {
		if c.Name() != "completion" {
			continue
		}
		c.Args = cobra.ArbitraryArgs // a shell cobra knows is a subcommand: any arg left is not one
		c.RunE = func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				return usageErrorf("completion: name a shell: %s", shells)
			}
			return usageErrorf("completion %q: want %s", args[0], shells)
		}
	}
}
