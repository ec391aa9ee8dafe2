package sshconfig

import (
	"fmt"
	"slices"
	"strings"

	"github.com/fanout/fanout/job/ssh/internal/hostkeys"
)

// DefaultKex is fanout's key-exchange preference. curve25519-sha256 comes
// first: it is what every OpenSSH since 6.5 speaks, it costs the client the
// least CPU per handshake (the figure that decides how many hosts one machine
// drives), and it keeps the first kex packet small. The post-quantum
// mlkem768x25519-sha256 follows, so `-o KexAlgorithms=mlkem768x25519-sha256`
// (or a server that offers nothing else) gets it.
var DefaultKex = []string{
	"curve25519-sha256", "curve25519-sha256@libssh.org", "mlkem768x25519-sha256",
	"ecdh-sha2-nistp256", "ecdh-sha2-nistp384", "ecdh-sha2-nistp521",
	"diffie-hellman-group14-sha256",
}

// Flag reads a yes/no option as OpenSSH does: yes or true, no or
// false, in any case; anything else is an error naming the option.
func Flag(key, v string) (bool, error) {
	switch strings.ToLower(v) {
	case "yes", "true":
		return true, nil
	case "no", "false":
		return false, nil
	}
	return false, fmt.Errorf("ssh: option %s=%q: want yes or no", key, v)
}

// FlagOn is a checked yes/no value: true for yes or true.
func FlagOn(v string) bool {
	on, _ := Flag("", v)
	return on
}

// Policy maps StrictHostKeyChecking values to fanout's policies.
func Policy(v string) (string, error) {
	switch strings.ToLower(v) {
	case "yes", "ask":
		return hostkeys.Strict, nil
	case "accept-new":
		return hostkeys.AcceptNew, nil
	case "no", "off":
		return hostkeys.Off, nil
	}
	return "", fmt.Errorf("ssh: StrictHostKeyChecking=%q: want yes, accept-new or no", v)
}

// supportedKex are the key exchanges x/crypto/ssh implements.
var supportedKex = []string{
	"curve25519-sha256", "curve25519-sha256@libssh.org", "mlkem768x25519-sha256",
	"ecdh-sha2-nistp256", "ecdh-sha2-nistp384", "ecdh-sha2-nistp521",
	"diffie-hellman-group14-sha256", "diffie-hellman-group16-sha512",
	"diffie-hellman-group-exchange-sha256", "diffie-hellman-group14-sha1",
}

// KexList reads an OpenSSH KexAlgorithms value: a list, or +list (append
// to the default), -list (remove), ^list (put first).
func KexList(v string) ([]string, error) {
	op := byte(0)
	if v != "" && strings.ContainsRune("+-^", rune(v[0])) {
		op, v = v[0], v[1:]
	}
	names := SplitList(v)
	for _, n := range names {
		if !slices.Contains(supportedKex, n) {
			return nil, fmt.Errorf("ssh: KexAlgorithms %q: not supported (supported: %s)", n, strings.Join(supportedKex, ","))
		}
	}
	switch op {
	case '+':
		return append(slices.Clone(DefaultKex), names...), nil
	case '-':
		return slices.DeleteFunc(slices.Clone(DefaultKex), func(k string) bool { return slices.Contains(names, k) }), nil
	case '^':
		rest := slices.DeleteFunc(slices.Clone(DefaultKex), func(k string) bool { return slices.Contains(names, k) })
		return append(names, rest...), nil
	}
	return names, nil
}
