package watch

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/fanout/fanout/job"
	"github.com/fanout/fanout/target"
)

// TestFeedIsRun: the rounds of a watch fed their Results from elsewhere
// (a cluster watch's follower) give the changes, ids and round counts that
// Run gives polling them itself, under --confirm 2/3 and the flap rule: a
// one-round blip is held back, a target that toggles is flapping once, then
// settles once.
func TestFeedIsRun(t *testing.T) {
	t.Parallel()
	set := parse(t, "127.0.0.1-4")
	script := func(round uint64, tg target.Target) job.Result {
		switch tg.Addr.As4()[3] {
		case 1: // a one-round blip in round 3
			return upOrDown(tg, round != 3)
		case 2: // toggles every round from round 2 to 9
			return upOrDown(tg, round < 2 || round > 9 || round%2 == 1)
		case 3: // down from round 5 on
			return upOrDown(tg, round < 5)
		}
		return result(tg, job.Error, job.ClassResolve)
	}
	for _, rules := range []Options{
		{Confirm: Confirm{2, 3}},
		{Confirm: Confirm{1, 1}, Flap: Flap{K: 2, M: 6}},
	} {
		const rounds = 16
		ran, _ := watchN(t, set, rounds, rules, script)

		fed := &recorder{}
		opts := rules
		opts.Watch, opts.Observers = "w1", []Observer{fed}
		f := NewFeed(set, opts)
		for n := uint64(1); n <= rounds; n++ {
			f.RoundStart(Round{N: n, Due: time.Now(), Start: time.Now()})
			// Results come in any order within a round.
			for i := int(set.Len()) - 1; i >= 0; i-- {
				r := script(n, set.At(uint64(i)))
				r.Index = uint64(i)
				f.Result(r)
			}
			f.RoundEnd(Round{End: time.Now()})
		}
		if len(fed.errs) > 0 {
			t.Fatal(fed.errs)
		}
		ids := func(r *recorder) []string {
			var out []string
			for _, c := range r.changes {
				out = append(out, fmt.Sprintf("%s %s %s/%s", c.ID, c.Kind, c.PrevStatus, c.PrevClass))
			}
			slices.Sort(out) // a round's Results, and so its changes, come in any order
			return out
		}
		if got, want := ids(fed), ids(ran); !slices.Equal(got, want) || len(want) == 0 {
			t.Errorf("confirm %v flap %v: fed changes\n%v\nwant Run's\n%v", rules.Confirm, rules.Flap, got, want)
		}
		for i, rd := range fed.rounds {
			w := ran.rounds[i]
			if rd.N != w.N || rd.Up != w.Up || rd.Down != w.Down || rd.Error != w.Error || rd.Changes != w.Changes || rd.Targets != w.Targets {
				t.Errorf("confirm %v flap %v: fed round %+v, want Run's %+v", rules.Confirm, rules.Flap, rd, w)
			}
		}
		if st := f.Stats(); st.Rounds != rounds || st.Changes != uint64(len(ran.changes)) {
			t.Errorf("confirm %v flap %v: stats %+v", rules.Confirm, rules.Flap, st)
		}
		if rules.Confirm.N == 2 && slices.ContainsFunc(fed.events(), func(e string) bool { return e == "3:down:127.0.0.1" }) {
			t.Errorf("--confirm 2/3: the one-round blip of round 3 was reported: %v", fed.events())
		}
	}
}
