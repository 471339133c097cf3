package acceptor

// Test hooks for the external test package.

// WithRingExtraFlags makes the acceptor ring's setup request extra flags,
// to simulate a kernel that refuses io_uring (see internal/uring).
func WithRingExtraFlags(c Config, flags uint32) Config {
	c.ringExtraFlags = flags
	return c
}
