//go:build !unix

package ingest

// DefaultMaxConns is ServerConfig.MaxConns's default: no bound where the
// descriptor limit cannot be read.
func DefaultMaxConns() int { return 0 }
