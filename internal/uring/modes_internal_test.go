//go:build linux

package uring

import (
	"runtime"
	"testing"
	"time"
)

// New picks SINGLE_ISSUER|DEFER_TASKRUN on this kernel, so the other tests
// only run that mode. This one runs the fallback modes' rings (made with
// setup directly) through the same paths: SQ full, CQ overflow flushed by
// Reap, a completion posted as task work, a timed wait.
func TestFallbackModes(t *testing.T) {
	for _, tc := range []struct {
		mode  Mode
		flags uint32
	}{
		{ModeSingleIssuer, setupSingleIssuer | setupDeferTaskrun},
		{ModeCoopTaskrun, setupCoopTaskrun | setupTaskrunFlag},
		{ModePlain, 0},
	} {
		t.Run(tc.mode.String(), func(t *testing.T) {
			done := make(chan struct{})
			go func() {
				defer close(done)
				runtime.LockOSThread()
				defer runtime.UnlockOSThread()
				r, err := setup(8, 16, tc.flags|setupCQSize|setupClamp, nil)
				if err != nil {
					t.Errorf("setup: %v", err)
					return
				}
				defer r.Close()
				r.mode = tc.mode
				if err := r.probe(); err != nil {
					t.Errorf("probe: %v", err)
					return
				}
				// 40 NOPs: the SQ (8) fills and submits by itself, the CQ
				// (16) overflows and Reap flushes the overflow.
				const n = 40
				for i := range n {
					r.PrepNop(uint64(i + 1))
				}
				seen := make(map[uint64]bool)
				dst := make([]CQE, 5)
				deadline := time.Now().Add(5 * time.Second)
				for len(seen) < n && time.Now().Before(deadline) {
					if err := r.SubmitAndWait(20 * time.Millisecond); err != nil {
						t.Errorf("SubmitAndWait: %v", err)
						return
					}
					for k := r.Reap(dst); k > 0; k = r.Reap(dst) {
						for _, c := range dst[:k] {
							if seen[c.UserData] || c.Res != 0 {
								t.Errorf("completion %+v twice or failed", c)
							}
							seen[c.UserData] = true
						}
					}
				}
				if len(seen) != n || r.Overflows() == 0 {
					t.Errorf("%d of %d NOPs completed, %d overflows (want > 0)", len(seen), n, r.Overflows())
				}
				// A timeout completes through task work; the wait ends
				// with it, well before SubmitAndWait's own limit.
				start := time.Now()
				r.PrepTimeout(10*time.Millisecond, 99)
				var got []CQE
				for len(got) == 0 && time.Since(start) < 5*time.Second {
					if err := r.SubmitAndWait(2 * time.Second); err != nil {
						t.Errorf("SubmitAndWait: %v", err)
						return
					}
					got = append(got, dst[:r.Reap(dst)]...)
				}
				if len(got) != 1 || got[0].UserData != 99 || time.Since(start) > time.Second {
					t.Errorf("timeout: %+v after %v", got, time.Since(start))
				}
			}()
			<-done
		})
	}
}
