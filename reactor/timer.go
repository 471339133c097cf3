package reactor

// timerEntry asks the reactor to look at connection index (of generation
// gen) at time when. Entries are never removed early: a connection records
// the time of its live entry in timerAt, and an entry that does not match
// is stale and skipped. Per-message work (refreshing the idle clock) thus
// touches no heap.
type timerEntry struct {
	when  int64
	index uint32
	gen   uint32
}

// tickIndex marks the Ticker's entry, sweepIndex the spare-buffer sweep's.
const (
	tickIndex  = ^uint32(0)
	sweepIndex = ^uint32(0) - 1
)

// timerHeap is a binary min-heap on when. Hand-written rather than
// container/heap so that pushing does not box entries (no allocation).
type timerHeap []timerEntry

func (h *timerHeap) add(e timerEntry) {
	*h = append(*h, e)
	s := *h
	i := len(s) - 1
	for i > 0 {
		p := (i - 1) / 2
		if s[p].when <= s[i].when {
			break
		}
		s[p], s[i] = s[i], s[p]
		i = p
	}
}

func (h *timerHeap) popDue(now int64) (timerEntry, bool) {
	s := *h
	if len(s) == 0 || s[0].when > now {
		return timerEntry{}, false
	}
	top := s[0]
	last := len(s) - 1
	s[0] = s[last]
	s = s[:last]
	i := 0
	for {
		l, r, m := 2*i+1, 2*i+2, i
		if l < len(s) && s[l].when < s[m].when {
			m = l
		}
		if r < len(s) && s[r].when < s[m].when {
			m = r
		}
		if m == i {
			break
		}
		s[m], s[i] = s[i], s[m]
		i = m
	}
	*h = s
	return top, true
}

func (h timerHeap) next() (int64, bool) {
	if len(h) == 0 {
		return 0, false
	}
	return h[0].when, true
}
