//go:build !unix

package ingest

import "os"

// lockDir does nothing where flock is missing: on these systems keeping two
// FileSinks off one directory is the caller's job.
func lockDir(string) (*os.File, error) { return nil, nil }

// unlockDir releases a lock taken by lockDir.
func unlockDir(*os.File) {}
