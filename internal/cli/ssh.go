package cli

import (
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/fanout/fanout"
	jobssh "github.com/fanout/fanout/job/ssh"
	"github.com/fanout/fanout/target"
)

func init() { register(newSSHCmd) }

// newSSHCmd is fanout ssh: one round, no connection kept.
func newSSHCmd() *cobra.Command { return sshCmd(false) }

// newWatchSSHCmd is the ssh job of fanout watch ssh: it keeps each host's
// connection between rounds (--reconnect, --max-connections).
func newWatchSSHCmd() *cobra.Command { return sshCmd(true) }

// sshFlags are the ssh command's own flags.
type sshFlags struct {
	cfg       jobssh.Config
	options   []string
	stdinFile string
	out       *cmdOutput
	// A repeated ssh job's (fanout watch ssh): addKeepFlags, keep.
	reconnect bool
	maxConns  int
	printG    bool
}

// addKeepFlags registers the flags of an ssh job that runs round after
// round (fanout watch ssh): whether each host's connection is kept between
// rounds, and how many are. keep applies them.
func (s *sshFlags) addKeepFlags(fl *pflag.FlagSet) {
	fl.BoolVar(&s.reconnect, "reconnect", false, "connect to every host anew each round (default: keep each host's authenticated connection between rounds, with keepalives, and open only a session per round)")
	fl.IntVar(&s.maxConns, "max-connections", 0, "connections kept between rounds at most, the least recently used closed first (default: as many as -c)")
}

// keep makes the job keep connections between rounds, unless --reconnect;
// at most --max-connections, else concurrency (-c) of them.
func (s *sshFlags) keep(concurrency int) {
	s.cfg.KeepConnections = !s.reconnect
	s.cfg.MaxConnections = s.maxConns
	if s.cfg.MaxConnections == 0 {
		s.cfg.MaxConnections = concurrency
	}
}

// keepIdle is how long a connection kept between rounds every apart may
// sit unused: a host's turn moves within its round (--spread, a reloaded
// list), so two of its turns can be up to two intervals apart; never less
// than the pool's default.
func keepIdle(every time.Duration) time.Duration {
	if every > jobssh.DefaultIdleTimeout/2 {
		return 2 * every
	}
	return jobssh.DefaultIdleTimeout
}

func sshCmd(watching bool) *cobra.Command {
	s := &sshFlags{}
	var f *sweepFlags
	cmd := &cobra.Command{
		Use:   "ssh [flags] TARGETS... -- COMMAND",
		Short: "Run a command on every target over SSH",
		Long: `Run COMMAND on every target over SSH and gather what it prints. A target
may carry its user and port (root@web1, web1:2222, root@db[1-3]:2222,
admin@[fe80::1%eth0]:2222), which win over -l and -p.

Authentication is OpenSSH's: the ssh-agent (SSH_AUTH_SOCK), identity files
(-i, IdentityFile in ~/.ssh/config, else ~/.ssh/id_ed25519, id_ecdsa, id_rsa;
an encrypted key's passphrase is asked once, on the terminal), and
~/.ssh/config then /etc/ssh/ssh_config (-F replaces both), resolved for
each host as OpenSSH does: Host and Match blocks, Include, tokens, first
value wins, every option per host (HostName, User, Port, IdentityFile,
ProxyJump chains, ConnectTimeout, StrictHostKeyChecking, known_hosts files,
KexAlgorithms, ...); -G prints what fanout resolved for each target in ssh
-G's form. What fanout cannot honour (Match exec, ProxyCommand) fails the
hosts that use it, naming the file and line. Host keys are checked against ~/.ssh/known_hosts (UserKnownHostsFile,
or --known-hosts instead) and the global /etc/ssh/ssh_known_hosts
(GlobalKnownHostsFile; "none" for none), host certificates included
(@cert-authority), and an unknown or changed key fails that host
(--host-key strict); accept-new adds unknown keys to the user's file
(hashed with HashKnownHosts yes), off checks nothing.

A target is up when the command exits 0. Output, by default, is every line
prefixed with its host (like pdsh); --gather prints each distinct output once
under its hosts (like clush -b); --outdir writes DIR/HOST.stdout and
DIR/HOST.stderr (like pssh -o/-e); -o jsonl and -o csv give the full Result.

-c bounds the sessions in flight. SSH handshakes in flight (the costly part
for the remote sshd) adapt to how fast the servers answer, as TCP's window
does: more while handshakes stay quick, fewer when they slow down, up to
--max-handshakes; the wait for a handshake counts neither in
--connect-timeout nor in the RTT reported. --timeout bounds the command,
from the moment the session starts; --connect-timeout the TCP connection,
handshake and authentication. --retries retries connection failures.
-o Key=Value sets an ssh_config option (User, Port, IdentityFile, ProxyJump,
ConnectTimeout, StrictHostKeyChecking, UserKnownHostsFile,
GlobalKnownHostsFile, HashKnownHosts, KexAlgorithms, ...),
while -o text|jsonl|csv chooses the result format.

With --server, each worker logs in with its own keys, ssh config, known_hosts
and bastion (fanout worker --allow ssh --help): -i, -F, --known-hosts, -J and
the -o options naming files or a bastion are refused, and --host-key may only
be stricter than a worker's own policy.`,
		Example: `  fanout ssh web[01-40].example.com -- uptime
  fanout ssh --gather -l root 10.1.0.0/24 -- cat /etc/debian_version
  fanout ssh -c 5000 --max-handshakes 256 -o jsonl @hosts.txt -- 'df -h /'
  fanout ssh --outdir out/ --timeout 30s @hosts.txt -- journalctl -n 50
  fanout ssh -J admin@bastion -o StrictHostKeyChecking=accept-new db[1-3] -- hostname
  fanout ssh -G alice@web1 db[1-2]:2222`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if s.printG {
				return s.printConfig(cmd, args)
			}
			dash := cmd.ArgsLenAtDash()
			if dash < 0 || dash == len(args) {
				return usageErrorf("no command given: want ssh TARGETS... -- COMMAND")
			}
			targets := args[:dash]
			s.cfg.Command = strings.Join(args[dash:], " ")
			if err := s.finish(cmd, f); err != nil {
				return err
			}
			if ls := s.cfg.LocalSettings(); len(ls) > 0 && f.cluster.server != "" {
				// A worker logs in with its own keys and files, never ones a
				// sweep names: it would refuse the sweep.
				return usageErrorf("%s with --server: a cluster's ssh sweeps run with each worker's own keys, ssh config, known_hosts and bastion (fanout worker --allow ssh --identity FILE --ssh-config FILE --known-hosts FILE --jump HOST)", strings.Join(ls, ", "))
			}
			// The command's deadline is the job's, from session start:
			// waiting for a handshake slot must not eat into it.
			s.cfg.CommandTimeout, f.timeout = f.timeout, 0
			// Retries are the job's: connection failures only, never a
			// command that ran (the engine would retry a command timeout).
			s.cfg.Retries, f.retries = f.retries, 0
			if wf := watchOf(cmd); watching && wf != nil {
				// The watch's store records the job as it polls, not how
				// it keeps its connections (--reconnect, --every may
				// change between runs of the same watch).
				wf.recordOptions = jobOptions(s.cfg)
				s.keep(f.concurrency)
				if s.cfg.KeepConnections {
					s.cfg.IdleTimeout = keepIdle(wf.every)
				}
			}
			s.out.apply(f)
			return runSweep(cmd, f, fanout.Spec{
				Job:        jobssh.Kind,
				JobOptions: jobOptions(s.cfg),
				Targets:    targets,
			})
		},
	}
	f = addSweepFlags(cmd, sweepDefaults{Timeout: 0, HostsOnly: true})
	fl := cmd.Flags()
	fl.StringVarP(&s.cfg.User, "user", "l", "", "remote user (default: ssh config, else the local user)")
	fl.IntVarP(&s.cfg.Port, "port", "p", 0, "remote port (default: ssh config, else 22)")
	fl.StringArrayVarP(&s.cfg.Identities, "identity", "i", nil, "identity file (repeatable), tried after the agent's keys")
	fl.StringVarP(&s.cfg.SSHConfig, "ssh-config", "F", "", `ssh config file, instead of ~/.ssh/config and /etc/ssh/ssh_config ("none" for none)`)
	fl.StringArrayVarP(&s.options, "ssh-option", "O", nil, "ssh_config option Key=Value (repeatable); -o Key=Value too")
	fl.StringVarP(&s.cfg.ProxyJump, "jump", "J", "", "reach every target through this bastion, [user@]host[:port]")
	fl.StringVar(&s.cfg.HostKey, "host-key", "", "host key policy: strict, accept-new or off (default: StrictHostKeyChecking of the ssh config, else strict)")
	fl.StringArrayVar(&s.cfg.KnownHosts, "known-hosts", nil, "known_hosts file to check and, with accept-new, write to (repeatable; default: UserKnownHostsFile, else ~/.ssh/known_hosts); GlobalKnownHostsFile is read too")
	fl.DurationVar(&s.cfg.ConnectTimeout, "connect-timeout", 0, "TCP connect + SSH handshake + auth (default: ssh config, else 10s)")
	fl.IntVar(&s.cfg.MaxHandshakes, "max-handshakes", jobssh.DefaultMaxHandshakes, "SSH handshakes in flight at most (fewer while the servers answer slowly)")
	fl.StringVar(&s.stdinFile, "stdin", "", "send FILE's bytes to every host's command (default: no stdin); --db keeps only their SHA-256 (resume asks for FILE again), --server keeps them on the server beside the sweep until its results are in")
	fl.IntVar(&s.cfg.MaxOutput, "max-output", jobssh.DefaultMaxOutput, "bytes of stdout and of stderr kept per host")
	s.out = addCmdOutputFlags(cmd)
	fl.BoolVar(&s.cfg.NoAgent, "no-agent", false, "do not use the ssh-agent")
	fl.BoolVarP(&s.printG, "print-config", "G", false, "print the ssh config fanout resolves for each target, in ssh -G's form, and exit (nothing is run)")
	// -o is both fanout's result format and OpenSSH's option flag: a value
	// with "=" (or a space) is an ssh option.
	out := fl.Lookup("output")
	out.Value = &formatOrOption{format: out.Value, options: &s.options}
	out.Usage = "result format text, jsonl or csv; or an ssh option Key=Value"
	s.addKeepFlags(fl)
	if !watching {
		// One round: nothing to keep a connection for (fanout watch ssh does).
		for _, name := range []string{"reconnect", "max-connections"} {
			refuseFlag(fl.Lookup(name), "fanout ssh runs one round and keeps no connection; connections are kept between the rounds of fanout watch ssh")
		}
	}
	return cmd
}

// printConfig is -G: each target's resolved ssh config, as ssh -G prints
// it, in the order given.
func (s *sshFlags) printConfig(cmd *cobra.Command, args []string) error {
	if dash := cmd.ArgsLenAtDash(); dash >= 0 {
		args = args[:dash]
	}
	if len(args) == 0 {
		return usageErrorf("-G: no target given: want ssh -G TARGETS...")
	}
	s.cfg.Command = "true"
	if err := s.finish(cmd, nil); err != nil {
		return err
	}
	env := jobssh.DefaultEnv()
	env.Warn = cmd.ErrOrStderr()
	var targets []target.Target
	for _, a := range args {
		set, err := target.Parse([]string{a}, target.ParseOptions{Takes: target.Takes{Port: true, User: true}, Job: jobssh.Kind, Stdin: cmd.InOrStdin()})
		if err != nil {
			return usageError(err)
		}
		for i := uint64(0); i < set.Len() && i < 1<<20; i++ {
			targets = append(targets, set.At(i))
		}
	}
	if err := jobssh.PrintConfig(cmd.OutOrStdout(), s.cfg, env, targets); err != nil {
		return usageError(err)
	}
	return nil
}

// finish checks and completes the ssh flags.
func (s *sshFlags) finish(cmd *cobra.Command, f *sweepFlags) error {
	for _, o := range s.options {
		k, v, err := jobssh.ParseOption(o)
		if err != nil {
			return usageError(err)
		}
		if s.cfg.Options == nil {
			s.cfg.Options = map[string]string{}
		}
		if _, dup := s.cfg.Options[k]; !dup { // OpenSSH: the first value wins
			s.cfg.Options[k] = v
		}
	}
	switch s.cfg.HostKey {
	case "", jobssh.HostKeyStrict, jobssh.HostKeyAcceptNew, jobssh.HostKeyOff:
	default:
		return usageErrorf("--host-key %q: want strict, accept-new or off", s.cfg.HostKey)
	}
	if s.stdinFile != "" {
		data, err := readStdinFile(cmd, s.stdinFile)
		if err != nil {
			return usageError(fmt.Errorf("--stdin: %w", err))
		}
		s.cfg.Stdin = data
	}
	return nil
}

// readStdinFile reads --stdin FILE ("-": standard input), never nil.
func readStdinFile(cmd *cobra.Command, file string) ([]byte, error) {
	var data []byte
	var err error
	if file == "-" {
		data, err = io.ReadAll(cmd.InOrStdin())
	} else {
		data, err = os.ReadFile(file)
	}
	if data == nil && err == nil {
		data = []byte{}
	}
	return data, err
}

// formatOrOption is the value of -o: a result format, or an ssh option.
type formatOrOption struct {
	format  pflag.Value
	options *[]string
}

func (v *formatOrOption) Set(s string) error {
	if strings.ContainsAny(s, "= \t") {
		*v.options = append(*v.options, s)
		return nil
	}
	return v.format.Set(s)
}
func (v *formatOrOption) String() string { return v.format.String() }
func (v *formatOrOption) Type() string   { return "format|Key=Value" }
