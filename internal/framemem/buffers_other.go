//go:build !unix

package framemem

func mapBuffer(n int) []byte { return make([]byte, n) }

func unmapBuffer([]byte) {}
