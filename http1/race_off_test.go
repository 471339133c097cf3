//go:build !race

package http1

// raceEnabled is true when the race detector is on; it instruments memory
// accesses with allocations of its own, so allocation tests skip.
const raceEnabled = false
