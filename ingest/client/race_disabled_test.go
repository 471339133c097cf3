//go:build !race

package client

// raceEnabled is true when the race detector is on; it allocates on its
// own, so AllocsPerRun tests skip.
const raceEnabled = false
