package ssh

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/fanout/fanout/target"
)

// A worker whose own ssh config keeps some hosts stricter than others
// keeps them so for every sweep it runs: the sweep's policy (or none)
// narrows each host's, and never replaces the strict ones by the relaxed
// default (which taking the "Host *" value as the worker's policy did).
func TestConfinePerHostPolicy(t *testing.T) {
	t.Parallel()
	home := newHome(t, "")
	env := home.env()
	conf := filepath.Join(t.TempDir(), "config")
	os.WriteFile(conf, []byte("Host web1\n  StrictHostKeyChecking yes\nHost *\n  StrictHostKeyChecking no\n"), 0o600)
	local := Local{SSHConfig: conf}
	policies := func(c Config) (web1, web2 string) {
		t.Helper()
		b, _ := json.Marshal(c)
		out, err := Confine(b, local, env)
		if err != nil {
			t.Fatalf("Confine(%+v): %v", c, err)
		}
		var got Config
		json.Unmarshal(out, &got)
		j := newJob(t, got, env)
		return settingsOf(t, j, target.Target{Host: "web1"}).hostKeys.Policy(), settingsOf(t, j, target.Target{Host: "web2"}).hostKeys.Policy()
	}
	if w1, w2 := policies(Config{Command: "true"}); w1 != HostKeyStrict || w2 != HostKeyOff {
		t.Errorf("no policy asked: web1 %s, web2 %s; want strict, off (the worker's config per host)", w1, w2)
	}
	if w1, w2 := policies(Config{Command: "true", HostKey: HostKeyAcceptNew}); w1 != HostKeyStrict || w2 != HostKeyAcceptNew {
		t.Errorf("accept-new asked: web1 %s, web2 %s; want strict, accept-new", w1, w2)
	}
	if w1, w2 := policies(Config{Command: "true", Options: map[string]string{"StrictHostKeyChecking": "yes"}}); w1 != HostKeyStrict || w2 != HostKeyStrict {
		t.Errorf("strict asked: web1 %s, web2 %s; want strict, strict", w1, w2)
	}
	// A sweep cannot set the floor itself.
	if w1, _ := policies(Config{Command: "true", HostKeyAtLeast: HostKeyOff, HostKey: ""}); w1 != HostKeyStrict {
		t.Errorf("a sweep setting host_key_at_least: web1 %s, want strict", w1)
	}
}
