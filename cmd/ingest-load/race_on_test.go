//go:build race

package main

// raceEnabled: the race detector allocates on its own, so allocation
// tests skip.
const raceEnabled = true
