// Package dedupe finds events that were already loaded: SendGrid delivers
// at least once (and retries a whole batch whose 2xx it did not see), so the
// same event can reach the spool twice, hours apart.
//
// An event has up to two 128-bit keys: one from its sg_event_id and one from
// its content without the id (schema.Fingerprint). An event is a duplicate
// when either key was seen before: earlier in the same plan, or in a plan
// committed within the window (default 72 h). The history lives on disk as
// sorted runs of keys, one file per plan, merged against the plan's sorted
// keys by streaming, so memory holds only the current plan's keys however
// long the window or large the spool. The cost is reading the window's keys
// (16 bytes per event) once per plan.
package dedupe

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/zeebo/xxh3"

	"github.com/sgload/sgload/internal/durable"
)

// Key is a dedupe key.
type Key [16]byte

// IDKey is the key of an sg_event_id.
func IDKey(id []byte) Key {
	h := xxh3.New()
	h.WriteString("sg_event_id\x00")
	h.Write(id)
	return h.Sum128().Bytes()
}

// Set collects the keys of one plan's events, then decides which events are
// duplicates.
type Set struct {
	entries []entry
	events  int
}

type entry struct {
	key Key
	ord uint32
}

// Add records the keys of event number ord (0, 1, 2, ... in plan order).
func (s *Set) Add(ord int, keys ...Key) {
	for _, k := range keys {
		s.entries = append(s.entries, entry{key: k, ord: uint32(ord)})
	}
	s.events = max(s.events, ord+1)
}

// Index is the on-disk history.
type Index struct {
	dir string
}

// Open opens (creating) the history folder dir.
func Open(dir string) (*Index, error) {
	if err := durable.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	return &Index{dir: dir}, nil
}

const (
	runSuffix     = ".run"
	pendingSuffix = ".run.pending"
	magic         = "SGDEDUP1"
)

// Result says which events of a plan are duplicates.
type Result struct {
	dup []bool
	// InPlan and InHistory count duplicates found within the plan and
	// against earlier plans.
	InPlan, InHistory int
}

// Dup reports whether event ord is a duplicate.
func (r *Result) Dup(ord int) bool { return ord < len(r.dup) && r.dup[ord] }

// Resolve sorts the set, checks it against the committed history and
// returns the verdicts. The set's keys are then ready for WritePending.
func (ix *Index) Resolve(s *Set) (*Result, error) {
	slices.SortFunc(s.entries, func(a, b entry) int {
		if c := bytes.Compare(a.key[:], b.key[:]); c != 0 {
			return c
		}
		return int(a.ord) - int(b.ord)
	})
	res := &Result{dup: make([]bool, s.events)}
	// Within the plan: every later occurrence of a key is a duplicate.
	for i := 1; i < len(s.entries); i++ {
		if s.entries[i].key == s.entries[i-1].key {
			res.dup[s.entries[i].ord] = true
		}
	}
	inHistory := make([]bool, s.events)
	runs, err := ix.runs()
	if err != nil {
		return nil, err
	}
	for _, run := range runs {
		if err := mergeRun(run, s.entries, func(ord uint32) { inHistory[ord] = true }); err != nil {
			return nil, err
		}
	}
	for i := range res.dup {
		switch {
		case inHistory[i]:
			res.dup[i] = true
			res.InHistory++
		case res.dup[i]:
			res.InPlan++
		}
	}
	return res, nil
}

// mergeRun streams a sorted run against the sorted group and calls hit for
// every entry whose key is in the run.
func mergeRun(path string, group []entry, hit func(uint32)) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("open dedupe run: %w", err)
	}
	defer f.Close()
	br := bufio.NewReaderSize(f, 256<<10)
	n, err := readHeader(br)
	if err != nil {
		return fmt.Errorf("dedupe run %s: %w", path, err)
	}
	var k Key
	i := 0
	for r := uint64(0); r < n && i < len(group); r++ {
		if _, err := io.ReadFull(br, k[:]); err != nil {
			return fmt.Errorf("read dedupe run %s: %w", path, err)
		}
		for i < len(group) && bytes.Compare(group[i].key[:], k[:]) < 0 {
			i++
		}
		for j := i; j < len(group) && group[j].key == k; j++ {
			hit(group[j].ord)
		}
	}
	return nil
}

func readHeader(r io.Reader) (uint64, error) {
	var h [len(magic) + 8]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return 0, err
	}
	if string(h[:len(magic)]) != magic {
		return 0, errors.New("not a dedupe run")
	}
	return binary.LittleEndian.Uint64(h[len(magic):]), nil
}

// WritePending stores the set's keys as the pending run of plan id: part of
// the history only once Commit renames it, so a plan that is redone after a
// crash never finds its own keys.
func (ix *Index) WritePending(id string, s *Set) error {
	if len(s.entries) == 0 {
		return nil
	}
	var n uint64
	for i := range s.entries {
		if i == 0 || s.entries[i].key != s.entries[i-1].key {
			n++
		}
	}
	err := durable.WriteFunc(filepath.Join(ix.dir, id+pendingSuffix), 0o644, func(w io.Writer) error {
		bw := bufio.NewWriterSize(w, 256<<10)
		var h [len(magic) + 8]byte
		copy(h[:], magic)
		binary.LittleEndian.PutUint64(h[len(magic):], n)
		bw.Write(h[:])
		for i := range s.entries {
			if i == 0 || s.entries[i].key != s.entries[i-1].key {
				bw.Write(s.entries[i].key[:])
			}
		}
		return bw.Flush()
	})
	if err != nil {
		return fmt.Errorf("write dedupe run: %w", err)
	}
	return nil
}

// Commit makes plan id's pending run part of the history.
func (ix *Index) Commit(id string) error {
	p := filepath.Join(ix.dir, id+pendingSuffix)
	if err := durable.Rename(p, filepath.Join(ix.dir, id+runSuffix)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("commit dedupe run: %w", err)
	}
	return nil
}

// Abort drops plan id's pending run.
func (ix *Index) Abort(id string) error {
	if err := os.Remove(filepath.Join(ix.dir, id+pendingSuffix)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return durable.SyncDir(ix.dir)
}

// Expire removes runs committed before cutoff (now less the dedupe window)
// and returns how many it removed.
func (ix *Index) Expire(cutoff time.Time) (int, error) {
	files, err := os.ReadDir(ix.dir)
	if err != nil {
		return 0, fmt.Errorf("list dedupe history: %w", err)
	}
	removed := 0
	for _, f := range files {
		if !strings.HasSuffix(f.Name(), runSuffix) {
			continue
		}
		if info, err := f.Info(); err == nil && info.ModTime().Before(cutoff) {
			if err := os.Remove(filepath.Join(ix.dir, f.Name())); err != nil {
				return removed, err
			}
			removed++
		}
	}
	return removed, nil
}

func (ix *Index) runs() ([]string, error) {
	files, err := os.ReadDir(ix.dir)
	if err != nil {
		return nil, fmt.Errorf("list dedupe runs: %w", err)
	}
	var out []string
	for _, f := range files {
		if strings.HasSuffix(f.Name(), runSuffix) {
			out = append(out, filepath.Join(ix.dir, f.Name()))
		}
	}
	return out, nil
}

// Merge moves o's keys into s.
func (s *Set) Merge(o *Set) {
	s.entries = append(s.entries, o.entries...)
	s.events = max(s.events, o.events)
	o.entries = nil
}
