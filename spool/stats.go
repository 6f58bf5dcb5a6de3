package spool

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Read-only questions about a spool, for sgload status and flush's
// messages: none of them takes a lock or changes a file.

// OpenSegments lists the segments serve is writing (one per node that
// serves this spool, normally one).
func (d Dir) OpenSegments() ([]Segment, error) { return ListSegments(d.Events(), OpenSuffix) }

// QuarantineUsage counts the files in quarantine/ and their bytes.
func (d Dir) QuarantineUsage() (files int, bytes int64, err error) {
	entries, err := os.ReadDir(d.Quarantine())
	if errors.Is(err, os.ErrNotExist) {
		return 0, 0, nil
	}
	if err != nil {
		return 0, 0, fmt.Errorf("list quarantine %s: %w", d.Quarantine(), err)
	}
	for _, e := range entries {
		if e.IsDir() {
			continue
		}
		info, err := e.Info()
		if err != nil {
			continue // removed by an operator meanwhile
		}
		files++
		bytes += info.Size()
	}
	return files, bytes, nil
}

// FreeBytes is the space available to sgload on the spool's file system.
func (d Dir) FreeBytes() (uint64, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(d.Root, &st); err != nil {
		return 0, fmt.Errorf("statfs %s: %w", d.Root, err)
	}
	return st.Bavail * uint64(st.Bsize), nil
}

// Held reports whether a process holds the named lock, and its pid when it
// wrote one. It asks with a shared lock that it drops at once, so the only
// effect on the holder is nil; a process that tries to take the lock in
// that instant fails as if another were running (ErrBusy), which every
// command treats as harmless.
func (d Dir) Held(name string) (held bool, pid int, err error) {
	p := filepath.Join(d.State(), name+".lock")
	f, err := os.Open(p)
	if errors.Is(err, os.ErrNotExist) {
		return false, 0, nil // never taken
	}
	if err != nil {
		return false, 0, fmt.Errorf("check lock %s: %w", p, err)
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_SH|syscall.LOCK_NB); err != nil {
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			return false, 0, fmt.Errorf("check lock %s: %w", p, err)
		}
		b, _ := os.ReadFile(p)
		pid, _ = strconv.Atoi(strings.TrimSpace(string(b)))
		return true, pid, nil
	}
	_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
	return false, 0, nil
}

// CursorLag is how far one follower (forward, a raw tee) is behind.
type CursorLag struct {
	Name     string   `json:"name"`
	Position Position `json:"position"`
	// Bytes of event segments ahead of the cursor.
	Bytes int64 `json:"bytes"`
}

// CursorLags reports every follower's lag, by name.
func CursorLags(d Dir) ([]CursorLag, error) {
	entries, err := os.ReadDir(d.Cursors())
	if errors.Is(err, os.ErrNotExist) {
		return []CursorLag{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list cursors: %w", err)
	}
	f := &Follower{d: d}
	segs, err := f.segments()
	if err != nil {
		return nil, err
	}
	out := []CursorLag{}
	for _, e := range entries {
		name, ok := strings.CutSuffix(e.Name(), ".json")
		if !ok {
			continue
		}
		p, found, err := readCursor(filepath.Join(d.Cursors(), e.Name()))
		if err != nil {
			return nil, err
		}
		if !found {
			continue
		}
		out = append(out, CursorLag{Name: name, Position: p, Bytes: lagFrom(segs, p)})
	}
	return out, nil
}

// EventsSince counts the events of records received at or after since, in
// every event segment (sealed, open, and done/): how many arrived in a
// recent window, for an events/s that a separate process can compute.
// Only segments that can hold such records are read.
func EventsSince(d Dir, since time.Time) (int64, error) {
	f := &Follower{d: d}
	segs, err := f.segments()
	if err != nil {
		return 0, err
	}
	cut := since.UnixMicro()
	start := 0
	for i, s := range segs {
		if s.first <= cut {
			start = i // the segment in which since falls
		}
	}
	var n int64
	last := int64(-1)
	for _, s := range segs[start:] {
		if s.first == last {
			continue // the sealed and open copies of one segment, met while it was sealed
		}
		last = s.first
		r, err := OpenReader(s.path)
		if errors.Is(err, os.ErrNotExist) {
			continue // moved to done/ meanwhile; its copy there is counted
		}
		if err != nil {
			return n, err
		}
		for {
			rec, err := r.Next()
			if err != nil {
				if errors.Is(err, ErrCorrupt) {
					continue
				}
				break // io.EOF, or a segment cut short under us: count what was read
			}
			if rec.Sequence >= cut {
				n += int64(rec.Events)
			}
		}
		_ = r.Close()
	}
	return n, nil
}
