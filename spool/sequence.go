package spool

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/sgload/sgload/internal/durable"
)

// Sequencer hands out _sequence values: Unix microseconds, strictly
// increasing (bumped by one when the clock has not moved or went back), and
// increasing across restarts through a high-water mark kept in a state
// file. Serve's writer and sync each keep one (state/sequence and
// state/sync-sequence), since they run as separate processes.
type Sequencer struct {
	mu   sync.Mutex
	path string
	now  func() time.Time
	last int64
}

// OpenSequencer starts above the high-water mark saved at path (none yet is
// zero).
func OpenSequencer(path string, now func() time.Time) (*Sequencer, error) {
	s := &Sequencer{path: path, now: now}
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return s, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read sequence high-water mark: %w", err)
	}
	if s.last, err = strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64); err != nil {
		return nil, fmt.Errorf("parse %s: %w", path, err)
	}
	return s, nil
}

// Reserve returns the first of n consecutive sequences.
func (s *Sequencer) Reserve(n int) int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	v := s.now().UnixMicro()
	if v <= s.last {
		v = s.last + 1
	}
	s.last = v + int64(max(n, 1)) - 1
	return v
}

// Above makes every later sequence greater than v (a record found on disk).
func (s *Sequencer) Above(v int64) {
	s.mu.Lock()
	s.last = max(s.last, v)
	s.mu.Unlock()
}

// Last is the highest sequence handed out or seen.
func (s *Sequencer) Last() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.last
}

// Save stores the high-water mark durably.
func (s *Sequencer) Save() error {
	last := s.Last()
	return durable.WriteFile(s.path, []byte(strconv.FormatInt(last, 10)+"\n"), 0o644)
}
