//go:build sgload_testhooks

package main

import (
	"os"
	"syscall"

	"github.com/sgload/sgload/loader"
)

// crashPoint kills the process at the named protocol step when
// SGLOAD_CRASH_AT names it: the crash tests use it to stop a real flush at
// every step. Only binaries built with the sgload_testhooks tag have it
// (the tests build one); a release binary ignores the variable
// (testhooks_release.go).
func crashPoint() func(loader.Step) error {
	at := loader.Step(os.Getenv("SGLOAD_CRASH_AT"))
	if at == "" {
		return nil
	}
	return func(point loader.Step) error {
		if point == at {
			_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
			select {}
		}
		return nil
	}
}
