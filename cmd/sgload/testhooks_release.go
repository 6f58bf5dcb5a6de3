//go:build !sgload_testhooks

package main

// crashAt is the crash tests' hook (testhooks.go); a release binary has
// none, whatever its environment says.
func crashAt[S ~string]() func(S) error { return nil }
