package acceptor

// Balancer chooses the reactor for each accepted connection. It runs on the
// acceptor goroutine only, so it needs no locking, and must not block.
type Balancer interface {
	// Pick returns an index into loads, which holds the number of open
	// connections of each reactor (in reactor ID order). An index out of
	// range is reduced modulo len(loads).
	Pick(loads []int) int
}

// BalancerFunc adapts a function to a Balancer.
type BalancerFunc func(loads []int) int

// Pick calls f.
func (f BalancerFunc) Pick(loads []int) int { return f(loads) }

// RoundRobin hands connections to reactors in turn: cheap and even when
// connections cost about the same. The default.
func RoundRobin() Balancer { return &roundRobin{} }

type roundRobin struct{ next int }

func (b *roundRobin) Pick(loads []int) int {
	i := b.next % len(loads)
	b.next = i + 1
	return i
}

// LeastConnections hands each connection to the reactor with the fewest
// open connections (the lowest ID on ties): better when connections live
// for very different lengths of time.
func LeastConnections() Balancer { return leastConns{} }

type leastConns struct{}

func (leastConns) Pick(loads []int) int {
	best := 0
	for i, n := range loads {
		if n < loads[best] {
			best = i
		}
	}
	return best
}
