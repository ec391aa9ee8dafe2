package output

import (
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/mattn/go-isatty"
	"github.com/schollz/progressbar/v3"
)

// Progress is a snapshot of a running sweep's counters, as the progress bar
// reads them (the CLI fills it from engine.Counters: output does not import
// the engine).
type Progress struct {
	Done, Total, Up, Down, Errors, InFlight int64
	Rate                                    float64 // targets completed per second
}

// IsTerminal reports whether f is a terminal: where a progress bar belongs
// and where text lines are flushed one by one.
func IsTerminal(f *os.File) bool {
	return isatty.IsTerminal(f.Fd()) || isatty.IsCygwinTerminal(f.Fd())
}

// progressEvery is how often the bar is redrawn.
const progressEvery = 200 * time.Millisecond

// StartProgress draws a progress bar on w (done/total, rate, ETA, up, down,
// errors, in flight) from snap, redrawn every 200ms until stop is called;
// stop erases it and returns once its goroutine has ended. It draws on w
// whatever w is: callers show it only when IsTerminal(w) unless the user
// asked for it (--progress always). total <= 0 takes snap's Total.
func StartProgress(w *os.File, total int64, snap func() Progress) (stop func()) {
	if total <= 0 {
		total = snap().Total
	}
	bar := progressbar.NewOptions64(total,
		progressbar.OptionSetWriter(w),
		progressbar.OptionSetWidth(30),
		progressbar.OptionShowCount(),
		progressbar.OptionSetPredictTime(true),
		progressbar.OptionClearOnFinish(),
		progressbar.OptionSetDescription("sweep"),
	)
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(progressEvery)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				p := snap()
				if p.Total > 0 && p.Total != bar.GetMax64() {
					bar.ChangeMax64(p.Total)
				}
				// Describe then Set64, unthrottled: the last draw has both.
				bar.Describe(describe(p))
				_ = bar.Set64(p.Done)
			}
		}
	}()
	var once sync.Once
	return func() {
		once.Do(func() {
			close(done)
			wg.Wait()
			_ = bar.Clear()
			_ = bar.Exit()
		})
	}
}

// describe is the text before the bar: what a sweep's operator watches.
func describe(p Progress) string {
	return fmt.Sprintf("%.0f/s up %d down %d err %d inflight %d", p.Rate, p.Up, p.Down, p.Errors, p.InFlight)
}
