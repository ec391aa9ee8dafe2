// Package cli is the fanout command line: one file per subcommand, flags to
// options to a library call.
//
// A subcommand file registers its constructor from init:
//
//	func init() { register(newPingCmd) }
//
// so adding a command never means editing root.go. Commands return errors
// made with usageErrorf (exit 2) or exitCode (any code); any other error
// returned from a command's RunE prints "fanout: <message>" and exits 1.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"

	jobexec "github.com/fanout/fanout/job/exec"
	"github.com/fanout/fanout/output"
)

// Exit codes, as in the design.
const (
	ExitOK          = 0   // every target up
	ExitSomeNotUp   = 1   // at least one target down or in error (or a runtime failure)
	ExitUsage       = 2   // bad flags, bad targets, unknown job: nothing was sent
	ExitInterrupted = 130 // SIGINT or SIGTERM; finished results were flushed
)

// commands are the constructors registered by the subcommand files.
var commands []func() *cobra.Command

// register adds a subcommand; call it from the subcommand file's init.
func register(newCmd func() *cobra.Command) { commands = append(commands, newCmd) }

// exitError carries the process exit code up to Main. An exitError without a
// message (err nil) prints nothing: the command already said what it had to.
type exitError struct {
	code int
	err  error
	hint string // printed after the message for usage errors
}

func (e *exitError) Error() string {
	if e.err == nil {
		return fmt.Sprintf("exit %d", e.code)
	}
	return e.err.Error()
}

func (e *exitError) Unwrap() error { return e.err }

// usageErrorf is a usage error: exit 2, "fanout: <message>" and a hint.
func usageErrorf(format string, args ...any) error {
	return &exitError{code: ExitUsage, err: fmt.Errorf(format, args...)}
}

// usageError wraps err as a usage error (exit 2).
func usageError(err error) error { return &exitError{code: ExitUsage, err: err} }

// exitCode ends the command with code and no further message.
func exitCode(code int) error { return &exitError{code: code} }

// newRoot builds the command tree. Each call builds a fresh tree, so tests
// and repeated Main calls never share flag state.
func newRoot() *cobra.Command {
	root := &cobra.Command{
		Use:   "fanout JOB [flags] TARGETS... [-- COMMAND...]",
		Short: "Run a job against thousands to millions of hosts",
		Long: `fanout runs one job (ping, tcp connect, a local command, ssh) against any
number of hosts, at high concurrency, in bounded memory, and never loses a
result: every finished target is written even when the sweep is interrupted.

Results go to stdout (or --output-file); progress and the summary to stderr.
Exit status: 0 every target up, 1 some not up, 2 usage error, 130 interrupted.`,
		Example: `  fanout ping 192.168.2.0/24
  fanout tcp -p 22,80,443 --alive 192.168.2.0/24
  fanout exec 192.168.2.0/24 -- ping -c 3 -W 1 {}
  fanout ssh 'web[01-20].example.com' -- uptime`,
		SilenceErrors: true,
		SilenceUsage:  true,
		// With no job given: the usage, and exit 2.
		RunE: func(cmd *cobra.Command, args []string) error {
			cmd.SetOut(cmd.ErrOrStderr())
			_ = cmd.Usage()
			return exitCode(ExitUsage)
		},
	}
	// `fanout --version` is the first line of `fanout version`.
	root.Version = buildOf(readBuildInfo()).String()
	root.SetVersionTemplate("fanout {{.Version}}\n")
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		var fe *flagError // our own words, not pflag's "invalid argument ..." around them
		if errors.As(err, &fe) {
			err = fe
		}
		return &exitError{code: ExitUsage, err: err, hint: hintFor(c)}
	})
	// Help lists the job commands (those that take TARGETS) first.
	root.AddGroup(&cobra.Group{ID: "jobs", Title: "Jobs:"}, &cobra.Group{ID: "more", Title: "Results, clusters and more:"})
	root.SetHelpCommandGroupID("more")
	// cobra's own `fanout completion bash|zsh|fish|powershell`.
	root.SetCompletionCommandGroupID("more")
	for _, newCmd := range commands {
		c := newCmd()
		if c.GroupID == "" {
			c.GroupID = "more"
			if strings.Contains(c.Use, "TARGETS") {
				c.GroupID = "jobs"
			}
		}
		root.AddCommand(c)
	}
	// Flag checks common to every command (flags.go).
	markExclusive(root)
	checkFlags(root)
	return root
}

// hintFor is the line printed under a usage error.
func hintFor(c *cobra.Command) string {
	return fmt.Sprintf("Run '%s --help' for usage.", c.CommandPath())
}

// Main runs the command line and returns the process exit code.
func Main(args []string) int {
	// This process starts children only through job/exec: it may adopt
	// what they leave behind (a daemon), to kill and reap it.
	_ = jobexec.AdoptOrphans()
	defer debugHooks()()
	return run(context.Background(), args, os.Stdin, os.Stdout, os.Stderr)
}

// run is Main with its context and streams given, for in-process callers.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	code, _ := execute(ctx, newRoot(), args, stdin, stdout, stderr)
	return code
}

// execute runs root with args and returns the exit code, and whether a
// command was run (false: fanout stopped while parsing, so nothing was sent).
func execute(ctx context.Context, root *cobra.Command, args []string, stdin io.Reader, stdout, stderr io.Writer) (code int, ran bool) {
	root.SetArgs(args)
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	addCompletion(root, args)
	ranp := markRun(root)
	cmd, err := root.ExecuteContextC(ctx)
	ran = *ranp
	if err == nil {
		return ExitOK, ran
	}
	var ee *exitError
	if !errors.As(err, &ee) {
		// Cobra's own errors (unknown command, bad args) come before any
		// RunE: those are usage errors. Errors from a RunE are failures.
		code := ExitSomeNotUp
		if !ran {
			code = ExitUsage
		}
		ee = &exitError{code: code, err: err}
		if code == ExitUsage {
			ee.hint = hintFor(cmd)
		}
	}
	if ee.err != nil {
		// Messages quote files, hosts and servers: escaped (see output.AppendSafe).
		fmt.Fprintf(stderr, "fanout: %s\n", output.SafeLines(ee.err.Error()))
		if ee.code == ExitUsage {
			if ee.hint == "" {
				ee.hint = hintFor(cmd)
			}
			fmt.Fprintln(stderr, ee.hint)
		}
	}
	return ee.code, ran
}

// markRun wraps every RunE in the tree so that Main can tell errors cobra
// raised while parsing (usage) from errors a command returned (failures).
func markRun(root *cobra.Command) *bool {
	ran := new(bool)
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		if f := c.RunE; f != nil {
			c.RunE = func(cmd *cobra.Command, args []string) error {
				*ran = true
				return f(cmd, args)
			}
		} else if f := c.Run; f != nil {
			c.Run = func(cmd *cobra.Command, args []string) {
				*ran = true
				f(cmd, args)
			}
		}
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(root)
	return ran
}
