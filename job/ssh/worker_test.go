package ssh

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Confine: a sweep from the bus keeps what it may choose, gets the worker's
// files, keys and bastion in place of its own, and may narrow the worker's
// host-key policy, never widen it.
func TestConfine(t *testing.T) {
	t.Parallel()
	env := Env{Home: t.TempDir(), User: "w"}
	local := Local{SSHConfig: "none", Identities: []string{"/w/id"}, KnownHosts: []string{"/w/known_hosts"}, ProxyJump: "w@bastion"}
	confine := func(t *testing.T, c Config, l Local) (Config, error) {
		t.Helper()
		b, _ := json.Marshal(c)
		out, err := Confine(b, l, env)
		if err != nil {
			return Config{}, err
		}
		var got Config
		if err := json.Unmarshal(out, &got); err != nil {
			t.Fatal(err)
		}
		return got, nil
	}

	got, err := confine(t, Config{Command: "uptime", User: "root", Port: 2222, NoAgent: true, Options: map[string]string{"ConnectTimeout": "3"}}, local)
	if err != nil {
		t.Fatal(err)
	}
	if got.Command != "uptime" || got.User != "root" || got.Port != 2222 || !got.NoAgent || got.Options["ConnectTimeout"] != "3" {
		t.Errorf("what a sweep may choose was not kept: %+v", got)
	}
	if got.SSHConfig != "none" || strings.Join(got.Identities, ",") != "/w/id" || strings.Join(got.KnownHosts, ",") != "/w/known_hosts" ||
		got.ProxyJump != "w@bastion" || got.HostKey != HostKeyStrict {
		t.Errorf("the worker's settings were not applied: %+v", got)
	}

	// Kept connections are not the sweep's to ask of a worker.
	got, err = confine(t, Config{Command: "true", KeepConnections: true, MaxConnections: 1 << 30, IdleTimeout: 1 << 62}, local)
	if err != nil {
		t.Fatal(err)
	}
	if got.KeepConnections || got.MaxConnections != 0 || got.IdleTimeout != 0 {
		t.Errorf("a sweep's kept connections reached the worker: keep %v, max %d, idle %v", got.KeepConnections, got.MaxConnections, got.IdleTimeout)
	}

	for name, c := range map[string]Config{
		"--identity":           {Identities: []string{"/tmp/id"}},
		"--ssh-config":         {SSHConfig: "/tmp/config"},
		"system config":        {SystemSSHConfig: "/tmp/config"},
		"--known-hosts":        {KnownHosts: []string{"/tmp/kh"}},
		"--jump":               {ProxyJump: "evil"},
		"IdentityFile":         {Options: map[string]string{"IdentityFile": "/tmp/id"}},
		"ProxyJump":            {Options: map[string]string{"proxyjump": "evil"}},
		"UserKnownHostsFile":   {Options: map[string]string{"UserKnownHostsFile": "/tmp/kh"}},
		"GlobalKnownHostsFile": {Options: map[string]string{"GlobalKnownHostsFile": "/tmp/kh"}},
		"HashKnownHosts":       {Options: map[string]string{"HashKnownHosts": "no"}},
	} {
		c.Command = "true"
		if _, err := confine(t, c, local); err == nil || !strings.Contains(err.Error(), "only its operator chooses") {
			t.Errorf("%s in a sweep: %v, want a refusal", name, err)
		}
	}

	for _, tc := range []struct {
		worker, asked, option, want string // want "" = refused
	}{
		{"", "", "", HostKeyStrict},
		{HostKeyStrict, HostKeyAcceptNew, "", ""},
		{HostKeyStrict, HostKeyOff, "", ""},
		{HostKeyStrict, "", "no", ""},
		{HostKeyStrict, "", "accept-new", ""},
		{HostKeyStrict, HostKeyStrict, "", HostKeyStrict},
		{HostKeyAcceptNew, "", "", HostKeyAcceptNew},
		{HostKeyAcceptNew, HostKeyStrict, "", HostKeyStrict},
		{HostKeyAcceptNew, "", "yes", HostKeyStrict},
		{HostKeyAcceptNew, HostKeyOff, "", ""},
		{HostKeyOff, HostKeyAcceptNew, "", HostKeyAcceptNew},
		{HostKeyOff, "", "", HostKeyOff},
	} {
		c := Config{Command: "true", HostKey: tc.asked}
		if tc.option != "" {
			c.Options = map[string]string{"StrictHostKeyChecking": tc.option}
		}
		l := local
		l.HostKey = tc.worker
		got, err := confine(t, c, l)
		switch {
		case tc.want == "" && (err == nil || !strings.Contains(err.Error(), "never widen")):
			t.Errorf("worker %q, sweep %q/%q: %+v, %v; want a refusal", tc.worker, tc.asked, tc.option, got.HostKey, err)
		case tc.want != "" && (err != nil || got.HostKey != tc.want || got.Options["StrictHostKeyChecking"] != ""):
			t.Errorf("worker %q, sweep %q/%q: %q, %v; want %q", tc.worker, tc.asked, tc.option, got.HostKey, err, tc.want)
		}
	}

	// The worker's policy may come from its own config file.
	conf := filepath.Join(t.TempDir(), "config")
	if err := os.WriteFile(conf, []byte("StrictHostKeyChecking accept-new\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	l := local
	l.SSHConfig = conf
	if got, err := confine(t, Config{Command: "true"}, l); err != nil || got.HostKey != HostKeyAcceptNew {
		t.Errorf("policy from the worker's config: %q, %v; want accept-new", got.HostKey, err)
	}
	if _, err := confine(t, Config{Command: "true", HostKey: HostKeyOff}, l); err == nil {
		t.Error("off on a worker whose config says accept-new: no refusal")
	}
}

// A Config stored with the digest of its stdin builds only with the same
// bytes given back.
func TestStdinDigest(t *testing.T) {
	t.Parallel()
	const sum = "2bb80d537b1da3e38bd30361aa855686bde0eacd7162fef6a25fe97bf527a25b" // sha256("secret")
	for _, tc := range []struct {
		stdin []byte
		want  string
	}{
		{nil, "give the same bytes again"},
		{[]byte("other"), "not the same bytes"},
		{[]byte("secret"), ""},
	} {
		c := Config{Command: "cat", Stdin: tc.stdin, StdinSHA256: sum}
		err := c.validate()
		if (tc.want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("stdin %q: %v, want %q", tc.stdin, err, tc.want)
		}
	}
}
