package spool

import (
	"errors"
	"os"
	"regexp"
	"strings"
	"testing"
)

func TestHeld(t *testing.T) {
	d, err := Create(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if held, _, err := d.Held(LockFlush); held || err != nil {
		t.Fatalf("never taken: held %v, %v", held, err)
	}
	l, err := d.Lock(LockFlush)
	if err != nil {
		t.Fatal(err)
	}
	held, pid, err := d.Held(LockFlush)
	if !held || pid != os.Getpid() || err != nil {
		t.Fatalf("taken: held %v pid %d, %v", held, pid, err)
	}
	// The busy message names the holder.
	if _, err := d.Lock(LockFlush); !errors.Is(err, ErrBusy) || !regexp.MustCompile(`pid \d+ holds `).MatchString(err.Error()) {
		t.Fatalf("second lock: %v", err)
	}
	l.Unlock()
	if held, _, _ := d.Held(LockFlush); held {
		t.Fatal("held after Unlock")
	}
	// Asking left the lock free to take.
	l, err = d.Lock(LockFlush)
	if err != nil {
		t.Fatal(err)
	}
	l.Unlock()
}

// The floor message reads in units a person reads.
func TestDiskFullInHumanUnits(t *testing.T) {
	w, err := OpenWriter(t.TempDir(), Options{Node: "full", MinFreeBytes: 1 << 60})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	err = w.Accepting()
	if !errors.Is(err, ErrDiskFull) || !strings.Contains(err.Error(), "floor 1.0 EiB") || !regexp.MustCompile(`: [0-9.]+ [KMGTPE]?i?B free on `).MatchString(err.Error()) {
		t.Fatalf("%v", err)
	}
}
