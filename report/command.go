package report

import (
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/fanout/fanout"
	"github.com/fanout/fanout/target"
)

// jobFlags names the flag of a job option (its JSON key in the spec) where
// it is not the key with dashes; "" hides it (a secret, or what the command
// line carries otherwise).
var jobFlags = map[string]string{
	"ports": "-p", "user": "-l", "identities": "-i", "ssh_config": "-F", "options": "-o",
	"proxy_jump": "-J", "command_timeout": "--timeout", "stdin": "", "stdin_sha256": "--stdin",
	"argv": "", "command": "",
}

// CommandLine is the sweep as the fanout command that runs it, flags as a
// user types them (`fanout ping --count 3 -c 1000 --timeout 1s 10.0.0.0/16`),
// not the spec's JSON. Secrets are not in a spec; stdin shows as its SHA-256.
func CommandLine(s fanout.Spec) string {
	args := []string{"fanout", s.Job}
	var opts map[string]any
	_ = json.Unmarshal(s.JobOptions, &opts) // not an object: no options shown
	keys := make([]string, 0, len(opts))
	for k := range opts {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		v := opts[k]
		name, dur := k, false
		if base, ok := strings.CutSuffix(k, "_ns"); ok {
			name, dur = base, true
		}
		flag, ok := jobFlags[name]
		if !ok {
			flag = "--" + strings.ReplaceAll(name, "_", "-")
		}
		if flag == "" {
			continue
		}
		switch v := v.(type) {
		case bool:
			if v {
				args = append(args, flag)
			}
		case float64:
			if dur {
				args = append(args, flag, time.Duration(v).String())
			} else {
				args = append(args, flag, strconv.FormatFloat(v, 'f', -1, 64))
			}
		case string:
			args = append(args, flag, shellQuote(v))
		case []any:
			if flag == "-p" { // ports: one list
				var ps []string
				for _, e := range v {
					ps = append(ps, fmt.Sprint(e))
				}
				args = append(args, flag, strings.Join(ps, ","))
				continue
			}
			for _, e := range v {
				args = append(args, flag, shellQuote(fmt.Sprint(e)))
			}
		case map[string]any:
			sub := make([]string, 0, len(v))
			for sk := range v {
				sub = append(sub, sk)
			}
			sort.Strings(sub)
			for _, sk := range sub {
				args = append(args, flag, shellQuote(sk+"="+fmt.Sprint(v[sk])))
			}
		}
	}
	if s.Concurrency > 0 {
		args = append(args, "-c", strconv.Itoa(s.Concurrency))
	}
	if s.Rate > 0 {
		args = append(args, "--rate", strconv.FormatFloat(s.Rate, 'f', -1, 64))
	}
	if s.Timeout > 0 {
		args = append(args, "--timeout", s.Timeout.String())
	}
	if s.Retries > 0 {
		args = append(args, "--retries", strconv.Itoa(s.Retries))
	}
	if s.Shuffle {
		args = append(args, "--shuffle", "--seed", strconv.FormatUint(s.Seed, 10))
	}
	if s.ShardN > 0 {
		args = append(args, "--shard", fmt.Sprintf("%d/%d", s.ShardI, s.ShardN))
	}
	for _, e := range s.Excludes {
		args = append(args, "--exclude", shellQuote(e))
	}
	if s.MaxTargets > 0 && s.MaxTargets != target.DefaultMaxTargets {
		args = append(args, "--max-targets", strconv.FormatUint(s.MaxTargets, 10))
	}
	if s.AllowHuge {
		args = append(args, "--allow-huge")
	}
	for _, t := range s.Targets {
		args = append(args, shellQuote(t))
	}
	// The command of exec (argv) and ssh (command) comes last, after --.
	var tail []string
	if argv, ok := opts["argv"].([]any); ok {
		for _, a := range argv {
			tail = append(tail, shellQuote(fmt.Sprint(a)))
		}
	} else if c, ok := opts["command"].(string); ok {
		tail = append(tail, c) // ssh joins its words: the remote shell splits them
	}
	if len(tail) > 0 {
		args = append(append(args, "--"), tail...)
	}
	return strings.Join(args, " ")
}

// shellQuote quotes s for a POSIX shell when it needs it.
func shellQuote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_./:@%+=,") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
