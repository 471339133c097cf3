//go:build !race

package ingest

// raceEnabled is true when the race detector is on; it instruments memory
// accesses with allocations of its own, so AllocsPerRun tests skip.
const raceEnabled = false
