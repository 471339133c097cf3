package main

import (
	"fmt"
	"io"
	"time"

	"github.com/schollz/progressbar/v3"
)

// progress draws a progress bar on stderr while the load runs: by messages
// with --messages, else by time. It only reads the connections' atomic
// counters, from its own goroutine.
type progress struct {
	bar  *progressbar.ProgressBar
	done chan struct{}
	exit chan struct{}
}

const progressEvery = 250 * time.Millisecond

func startProgress(r *runner, conns []*conn, w io.Writer) *progress {
	byCount := r.cfg.Messages > 0 && r.cfg.Duration == 0
	var total int64
	desc := "sending"
	if byCount {
		for _, c := range conns {
			if !c.slow {
				total += int64(r.cfg.Messages)
			}
		}
	} else {
		total = (r.cfg.Warmup + r.cfg.Duration).Milliseconds()
	}
	opts := []progressbar.Option{
		progressbar.OptionSetWriter(w),
		progressbar.OptionSetDescription(desc),
		progressbar.OptionSetWidth(30),
		progressbar.OptionThrottle(progressEvery),
		progressbar.OptionSetPredictTime(false),
		progressbar.OptionClearOnFinish(),
		progressbar.OptionSetRenderBlankState(true),
	}
	if byCount {
		opts = append(opts, progressbar.OptionShowCount())
	}
	p := &progress{
		bar:  progressbar.NewOptions64(total, opts...),
		done: make(chan struct{}),
		exit: make(chan struct{}),
	}
	go p.loop(r, conns, byCount)
	return p
}

func (p *progress) loop(r *runner, conns []*conn, byCount bool) {
	defer close(p.exit)
	t := time.NewTicker(progressEvery)
	defer t.Stop()
	var lastAnswered uint64
	last := time.Now()
	for {
		select {
		case <-p.done:
			return
		case now := <-t.C:
			var sent, answered uint64
			for _, c := range conns {
				if !c.slow {
					sent += c.sent.Load()
					answered += c.answered.Load()
				}
			}
			rate := float64(answered-lastAnswered) / now.Sub(last).Seconds()
			lastAnswered, last = answered, now
			p.bar.Describe(fmt.Sprintf("%d conns  %8.0f msgs/s  %d sent  %d in flight", len(conns), rate, sent, sent-answered))
			if byCount {
				_ = p.bar.Set64(int64(sent))
			} else {
				_ = p.bar.Set64(min(time.Duration(r.since()).Milliseconds(), p.bar.GetMax64()))
			}
		}
	}
}

// finish stops and clears the bar.
func (p *progress) finish() {
	close(p.done)
	<-p.exit
	_ = p.bar.Finish()
	_ = p.bar.Clear()
}
