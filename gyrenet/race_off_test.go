//go:build !race

package gyrenet_test

const raceEnabled = false
