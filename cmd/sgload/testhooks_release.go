//go:build !sgload_testhooks

package main

import "github.com/sgload/sgload/loader"

// crashPoint is the crash tests' hook (testhooks.go); a release binary has
// none, whatever its environment says.
func crashPoint() func(loader.Step) error { return nil }
