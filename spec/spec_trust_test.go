package spec_test

import (
	"encoding/json"
	"strings"
	"testing"

	_ "github.com/fanout/fanout/job/icmp"
	_ "github.com/fanout/fanout/job/ssh"
	_ "github.com/fanout/fanout/job/tcp"
	sp "github.com/fanout/fanout/spec"
)

// Visit is Build's set and order without the job (tcp's ports expand it
// all the same), and never reads a file a Spec names.
func TestSpecVisit(t *testing.T) {
	t.Parallel()
	spec := sp.Spec{Job: "tcp", JobOptions: json.RawMessage(`{"ports":[22,80,443]}`), Targets: []string{"127.0.0.0/30"}, Shuffle: true, Seed: 3, ShardI: 2, ShardN: 3}
	set, order, _, err := spec.Build()
	if err != nil {
		t.Fatal(err)
	}
	vset, vorder, err := spec.Visit()
	if err != nil {
		t.Fatal(err)
	}
	if set.Len() != 12 || vset.Len() != set.Len() || vorder.Len() != order.Len() {
		t.Fatalf("Visit: %d targets, %d visited; Build: %d, %d", vset.Len(), vorder.Len(), set.Len(), order.Len())
	}
	for k := range order.Len() {
		if order.At(k) != vorder.At(k) || set.At(order.At(k)) != vset.At(vorder.At(k)) {
			t.Fatalf("position %d: Visit and Build disagree", k)
		}
	}
	for _, list := range [][]string{{"@/etc/hostname"}, {"-"}} {
		s := spec
		s.Excludes = list
		if _, _, err := s.Visit(); err == nil || !strings.Contains(err.Error(), "reads a local file") {
			t.Errorf("Visit with excludes %v: %v, want a refusal", list, err)
		}
	}
	s := spec
	s.JobOptions = json.RawMessage(`{"ports":[70000]}`)
	if _, _, err := s.Visit(); err == nil {
		t.Error("Visit with a bad port: no error")
	}
	if _, _, err := (sp.Spec{Job: "tcp", JobOptions: json.RawMessage(`{"ports":[1,2,3,4]}`), Targets: []string{"10.0.0.0/8"}}).Visit(); err == nil || !strings.Contains(err.Error(), "limit") {
		t.Errorf("Visit over --max-targets after the product: %v", err)
	}
}

// Visit parses targets as the kind takes them (its registered traits), as
// Build does: an ssh sweep's user@host:port targets are visited (a cluster
// collector of such a sweep used to refuse its own targets), and a ping
// sweep's host:port is refused alike by both, naming the kind.
func TestVisitTakesWhatTheKindTakes(t *testing.T) {
	t.Parallel()
	ssh := sp.Spec{Job: "ssh", JobOptions: json.RawMessage(`{"command":"true"}`), Targets: []string{"root@web1:2222", "web2"}}
	set, order, err := ssh.Visit()
	if err != nil {
		t.Fatalf("Visit of %v: %v", ssh.Targets, err)
	}
	if order.Len() != 2 || set.At(0).User != "root" || set.At(0).Port != 2222 || set.At(1).User != "" {
		t.Fatalf("Visit of %v: %d targets, first %+v", ssh.Targets, order.Len(), set.At(0))
	}
	ping := sp.Spec{Job: "ping", Targets: []string{"web1:22"}}
	_, _, err = ping.Visit()
	if err == nil || !strings.Contains(err.Error(), "ping takes no port") {
		t.Errorf("Visit of ping web1:22: %v, want ping's refusal of the port", err)
	}
}

// SplitStdin takes the bytes out and leaves their digest; JoinStdin puts
// back only the same bytes.
func TestSpecStdin(t *testing.T) {
	t.Parallel()
	spec := sp.Spec{Job: "ssh", JobOptions: json.RawMessage(`{"command":"cat","stdin":"c2VjcmV0"}`), Targets: []string{"h"}}
	split, b, err := spec.SplitStdin()
	if err != nil || string(b) != "secret" {
		t.Fatalf("SplitStdin: %q, %v", b, err)
	}
	if o := string(split.JobOptions); strings.Contains(o, "c2VjcmV0") || !strings.Contains(o, `"stdin_sha256":"2bb80d537b1da3e38bd30361aa855686bde0eacd7162fef6a25fe97bf527a25b"`) {
		t.Errorf("split options %s", o)
	}
	if again, b2, err := split.SplitStdin(); err != nil || b2 != nil || string(again.JobOptions) != string(split.JobOptions) {
		t.Errorf("SplitStdin of a split spec: %s, %q, %v", again.JobOptions, b2, err)
	}
	if _, err := split.JoinStdin([]byte("other")); err == nil || !strings.Contains(err.Error(), "not the same bytes") {
		t.Errorf("JoinStdin of other bytes: %v", err)
	}
	joined, err := split.JoinStdin([]byte("secret"))
	if err != nil || !strings.Contains(string(joined.JobOptions), `"stdin":"c2VjcmV0"`) {
		t.Errorf("JoinStdin: %s, %v", joined.JobOptions, err)
	}
	none := sp.Spec{Job: "tcp", JobOptions: json.RawMessage(`{"ports":[22]}`)}
	if s, b, err := none.SplitStdin(); err != nil || b != nil || string(s.JobOptions) != string(none.JobOptions) {
		t.Errorf("SplitStdin without stdin: %s, %q, %v", s.JobOptions, b, err)
	}
	if _, err := none.JoinStdin([]byte("x")); err == nil {
		t.Error("JoinStdin on a spec run without stdin: no error")
	}
}
