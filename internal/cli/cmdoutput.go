package cli

import (
	"github.com/fanout/fanout/job"

	"io"

	"github.com/spf13/cobra"

	"github.com/fanout/fanout/output"
)

// cmdOutput are the output flags of the commands that run a command per
// target (exec, ssh): in text, every line of a host's output prefixed with
// the host (pdsh, pssh -i), or --gather (clubak -c, dshbak -c), or --outdir
// (pssh -o/-e) with one line per host.
type cmdOutput struct {
	gather bool
	outdir string
}

// addCmdOutputFlags binds --gather (-b) and --outdir to cmd; they exclude
// each other.
func addCmdOutputFlags(cmd *cobra.Command) *cmdOutput {
	c := &cmdOutput{}
	fl := cmd.Flags()
	fl.BoolVarP(&c.gather, "gather", "b", false, "print each distinct output once, under its hosts in node-set form (like clubak -c)")
	fl.StringVar(&c.outdir, "outdir", "", "write DIR/HOST.stdout and DIR/HOST.stderr per host (like pssh -o/-e), one line per host on stdout")
	exclusive(cmd, "gather", "outdir")
	return c
}

// apply sets the sweep's text writer and, with --outdir, the files' sink.
func (c *cmdOutput) apply(f *sweepFlags) {
	f.results = c.resultWriter
	if c.outdir != "" {
		dir := c.outdir
		f.extraSinks = append(f.extraSinks, func() (output.Writer, error) { return output.NewOutDir(dir) })
	}
}

// resultWriter is the text-mode writer: inline lines, gathered groups, or
// with --outdir the one line per host of the text format.
func (c *cmdOutput) resultWriter(w, stderr io.Writer) (output.Writer, error) {
	switch {
	case c.gather:
		return output.NewGather(w), nil
	case c.outdir != "":
		return output.New("text", w, output.Filter{}) // the output is in the files
	}
	return output.NewInline(w, stderr), nil
}

// isCommandJob: the job runs a command per target, whose text output is the
// command's (resume and attach print it as exec and ssh do): the kind's
// registered PrintsOutput trait.
func isCommandJob(kind string) bool { return job.PrintsOutput(kind) }
