// Package output renders Results: text, JSONL, CSV, gathered outputs, the
// summary and the progress bar. It knows the common Result, never a job kind.
package output

import (
	"github.com/fanout/fanout/job"
)

// Writer is a sink for Results. The engine calls Write from one goroutine.
type Writer interface {
	Write(r job.Result) error
	// Close flushes what is buffered. It does not close the underlying io.Writer.
	Close() error
}
