package cli

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/fanout/fanout/cluster"
	"github.com/fanout/fanout/job"
	"github.com/fanout/fanout/target"
	"github.com/fanout/fanout/watch"
)

// seqLog is an Observer noting what the sequencer fed, in order.
type seqLog struct{ got []string }

func (l *seqLog) RoundStart(rd watch.Round) { l.got = append(l.got, fmt.Sprintf("start %d", rd.N)) }
func (l *seqLog) Result(n uint64, r job.Result) {
	l.got = append(l.got, fmt.Sprintf("result %d/%d", n, r.Index))
}
func (l *seqLog) Change(watch.Change) {}
func (l *seqLog) RoundEnd(rd watch.Round) {
	l.got = append(l.got, fmt.Sprintf("end %d: %d up", rd.N, rd.Up))
}

// TestRoundSequencer: a cluster watch's rounds reach the feed in order
// whatever order their chunks come in; results before the first whole round
// are dropped; a round of which nothing came is skipped once a later one
// ended.
func TestRoundSequencer(t *testing.T) {
	set, err := target.Parse([]string{"127.0.0.1-2"}, target.ParseOptions{})
	if err != nil {
		t.Fatal(err)
	}
	log := &seqLog{}
	feed := watch.NewFeed(set, watch.Options{Watch: "w", Observers: []watch.Observer{log}})
	s := newRoundSequencer(feed, cluster.WatchRecord{ID: "w", Every: time.Second, Total: 2})
	up := func(i uint64) job.Result { r := job.For(set.At(i), "tcp"); r.Index, r.Status = i, job.Up; return r }
	s.result(4, up(0)) // before First: dropped
	s.first(5)
	s.result(4, up(1))
	s.result(6, up(0)) // round 6's first chunk before round 5's
	s.result(5, up(1))
	s.roundEnd(watch.Round{N: 6})
	s.result(5, up(0))
	s.roundEnd(watch.Round{N: 5}) // 5 ends, 6 (held) is fed and ends
	s.result(8, up(1))            // nothing of round 7 comes
	s.result(8, up(0))
	s.roundEnd(watch.Round{N: 8}) // 7 is skipped
	s.result(9, up(0))
	want := []string{
		"start 5", "result 5/1", "result 5/0", "end 5: 2 up",
		"start 6", "result 6/0", "end 6: 1 up",
		"start 8", "result 8/1", "result 8/0", "end 8: 2 up",
		"start 9", "result 9/0",
	}
	if !slices.Equal(log.got, want) {
		t.Errorf("fed\n%v\nwant\n%v", log.got, want)
	}
}
