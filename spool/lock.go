package spool

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// The named locks: each command that must run alone on a spool takes its
// own, so serve, flush, sync and forward run side by side but never two of
// one kind.
const (
	LockServe   = "serve"
	LockFlush   = "flush"
	LockSync    = "sync"
	LockForward = "forward"
)

// Lock is an exclusive advisory lock on state/<name>.lock. The kernel drops
// it when the process dies, so a crash never leaves a stale lock.
type Lock struct{ f *os.File }

// Lock takes the named lock, or fails at once with an error wrapping
// ErrBusy that names the holder's pid when it is known.
func (d Dir) Lock(name string) (*Lock, error) {
	p := filepath.Join(d.State(), name+".lock")
	// A spool made by hand (segments copied into events/) has no state/ yet.
	if err := os.Mkdir(d.State(), 0o755); err != nil && !errors.Is(err, os.ErrExist) {
		return nil, fmt.Errorf("lock %s: %w", p, err)
	}
	f, err := os.OpenFile(p, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", p, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		holder, _ := os.ReadFile(p)
		_ = f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			by := "another process"
			if pid := strings.TrimSpace(string(holder)); pid != "" {
				by = "pid " + pid
			}
			return nil, fmt.Errorf("%w: %s holds %s", ErrBusy, by, p)
		}
		return nil, fmt.Errorf("lock %s: %w", p, err)
	}
	// The pid is for the message above only; the flock is the lock.
	_ = f.Truncate(0)
	_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	return &Lock{f: f}, nil
}

// Unlock releases the lock.
func (l *Lock) Unlock() error {
	if l == nil || l.f == nil {
		return nil
	}
	err := l.f.Close()
	l.f = nil
	return err
}
