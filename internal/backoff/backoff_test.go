package backoff

import (
	"context"
	"testing"
	"time"
)

func TestNominal(t *testing.T) {
	t.Parallel()
	const maxDur = time.Duration(1<<63 - 1)
	for _, tc := range []struct {
		name string
		p    Policy
		n    int
		want time.Duration
	}{
		{"first", Policy{Base: 10 * time.Millisecond, Max: time.Second}, 1, 10 * time.Millisecond},
		{"doubles", Policy{Base: 10 * time.Millisecond, Max: time.Second}, 2, 20 * time.Millisecond},
		{"doubles again", Policy{Base: 10 * time.Millisecond, Max: time.Second}, 5, 160 * time.Millisecond},
		{"last below cap", Policy{Base: 10 * time.Millisecond, Max: time.Second}, 7, 640 * time.Millisecond},
		{"capped", Policy{Base: 10 * time.Millisecond, Max: time.Second}, 8, time.Second},
		{"stays capped", Policy{Base: 10 * time.Millisecond, Max: time.Second}, 1000, time.Second},
		{"huge n", Policy{Base: time.Nanosecond, Max: time.Hour}, int(^uint(0) >> 1), time.Hour},
		{"huge n, odd cap", Policy{Base: 3, Max: 1e9 + 1}, int(^uint(0) >> 1), 1e9 + 1},
		{"n below 1", Policy{Base: 10 * time.Millisecond, Max: time.Second}, -3, 10 * time.Millisecond},
		{"zero policy", Policy{}, 1, DefaultBase},
		{"zero policy doubles", Policy{}, 3, 4 * DefaultBase},
		{"zero policy capped", Policy{}, 100, DefaultMax},
		{"zero max", Policy{Base: time.Second}, 100, DefaultMax},
		{"max below base", Policy{Base: time.Second, Max: time.Millisecond}, 1, time.Millisecond},
		{"max below base later", Policy{Base: time.Second, Max: time.Millisecond}, 5, time.Millisecond},
		{"no overflow", Policy{Base: time.Hour, Max: maxDur}, 200, ceiling},
	} {
		if got := tc.p.Nominal(tc.n); got != tc.want {
			t.Errorf("%s: %+v.Nominal(%d) = %v, want %v", tc.name, tc.p, tc.n, got, tc.want)
		}
	}
}

// Every draw lies in [d/2, 3d/2) of the nominal wait, and the draws differ.
func TestDelayJitter(t *testing.T) {
	t.Parallel()
	const maxDur = time.Duration(1<<63 - 1)
	for _, p := range []Policy{
		{Base: 10 * time.Millisecond, Max: 30 * time.Second},
		{Base: 50 * time.Millisecond, Max: 30 * time.Second},
		{},
		{Base: time.Hour, Max: maxDur},
	} {
		for n := 1; n <= 70; n++ {
			d := p.Nominal(n)
			seen := map[time.Duration]bool{}
			for range 200 {
				got := p.Delay(n)
				if got < d/2 || got >= d/2+d {
					t.Fatalf("%+v.Delay(%d) = %v, want in [%v, %v)", p, n, got, d/2, d/2+d)
				}
				seen[got] = true
			}
			// 200 uniform draws over millions of nanoseconds all equal: no jitter.
			if len(seen) < 2 {
				t.Fatalf("%+v.Delay(%d): all 200 draws were %v: no jitter", p, n, p.Delay(n))
			}
		}
	}
	// A one-nanosecond wait cannot be jittered, and must not panic.
	if got := (Policy{Base: time.Nanosecond, Max: time.Nanosecond}).Delay(1); got != 0 {
		t.Fatalf("1ns policy: Delay(1) = %v, want 0", got)
	}
}

func TestSleep(t *testing.T) {
	t.Parallel()
	if !Sleep(context.Background(), time.Millisecond) {
		t.Fatal("Sleep(background, 1ms) = false, want true")
	}
	if !Sleep(context.Background(), 0) {
		t.Fatal("Sleep(background, 0) = false, want true")
	}

	ended, cancel := context.WithCancel(context.Background())
	cancel()
	if Sleep(ended, 0) || Sleep(ended, time.Hour) {
		t.Fatal("Sleep on an ended context = true, want false")
	}
}

// Cancelling ctx ends an hour's Sleep: the call returns false. The deadline
// only catches a hang.
func TestSleepCancel(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	started := make(chan struct{})
	done := make(chan bool, 1)
	go func() {
		close(started)
		done <- Sleep(ctx, time.Hour)
	}()
	<-started
	cancel()
	select {
	case ok := <-done:
		if ok {
			t.Fatal("Sleep cancelled = true, want false")
		}
	case <-time.After(time.Minute):
		t.Fatal("Sleep(ctx, 1h) still asleep a minute after ctx was cancelled")
	}
}
