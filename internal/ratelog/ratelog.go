// Package ratelog limits how often a log line is written: under a flood
// (connection refusals, accept errors) a line per event would be a flood
// of its own.
package ratelog

import (
	"sync/atomic"
	"time"
)

// OncePerSecond lets a line through at most once a second. The zero value
// is ready; safe for concurrent use.
type OncePerSecond struct{ last atomic.Int64 }

// OK reports whether a line may be written now (and counts it as written).
func (o *OncePerSecond) OK() bool {
	now := time.Now().UnixNano()
	last := o.last.Load()
	return now-last >= int64(time.Second) && o.last.CompareAndSwap(last, now)
}
