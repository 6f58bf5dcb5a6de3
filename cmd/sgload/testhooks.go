//go:build sgload_testhooks

package main

import (
	"os"
	"syscall"
)

// crashAt kills the process at the named protocol step when SGLOAD_CRASH_AT
// names it: the crash tests use it to stop a real flush, replay, rebuild or
// compaction at every step. Only binaries built with the sgload_testhooks
// tag have it (the tests build one); a release binary ignores the variable
// (testhooks_release.go).
func crashAt[S ~string]() func(S) error {
	at := S(os.Getenv("SGLOAD_CRASH_AT"))
	if at == "" {
		return nil
	}
	return func(point S) error {
		if point == at {
			_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
			select {}
		}
		return nil
	}
}
