package dedupe

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/zeebo/xxh3"

	"github.com/sgload/sgload/internal/durable"
)

// The release before this one kept one history per spool, in state/dedupe/
// itself: one file per plan ("SGDEDUP1", a key count, then sorted 16-byte
// keys; the file's mtime is its commit time), with two keys per event: one
// of its sg_event_id alone and a hash of its bytes without the id. Its
// runs are adopted by the destination they describe (Adopt) and read until
// they age out of the window, with the keys that release would have made
// (LegacyKey), so an upgrade forgets nothing. Only the id key of an event
// with an id is looked up: its content hash is what merged distinct events.
const legacyMagic = "SGDEDUP1"

// LegacyKey is the key the previous release kept for an event: of its id,
// or, without one, of its exact bytes.
func LegacyKey(raw, id []byte) Key {
	if id == nil {
		return xxh3.Hash128(raw).Bytes()
	}
	h := xxh3.New()
	h.WriteString("sg_event_id\x00")
	h.Write(id)
	return h.Sum128().Bytes()
}

// AddLegacy records the previous release's key of event ord.
func (s *Set) AddLegacy(ord int, k Key) {
	s.legacy = append(s.legacy, newPlanEntry(k, ord))
	s.events = max(s.events, ord+1)
}

// LegacyRuns lists the previous release's runs in dir (not recursive).
func LegacyRuns(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list dedupe history: %w", err)
	}
	var out []string
	for _, e := range entries {
		if !e.IsDir() && strings.HasSuffix(e.Name(), runSuffix) {
			out = append(out, filepath.Join(dir, e.Name()))
		}
	}
	return out, nil
}

// Adopt moves the previous release's runs into this destination's history.
func (ix *Index) Adopt(paths []string) error {
	dir := filepath.Join(ix.dir, legacyDir)
	if err := durable.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for _, p := range paths {
		if err := durable.Rename(p, filepath.Join(dir, filepath.Base(p))); err != nil {
			return fmt.Errorf("adopt dedupe history: %w", err)
		}
	}
	return nil
}

// HasLegacy reports whether the history holds runs of the previous
// release, whose keys callers then add with AddLegacy.
func (ix *Index) HasLegacy() bool {
	runs, _ := LegacyRuns(filepath.Join(ix.dir, legacyDir))
	return len(runs) > 0
}

// ExpireLegacy deletes the previous release's runs in dir committed before
// cutoff.
func ExpireLegacy(dir string, cutoff time.Time) (int, error) {
	runs, err := LegacyRuns(dir)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, p := range runs {
		if info, err := os.Stat(p); err == nil && info.ModTime().Before(cutoff) {
			if err := os.Remove(p); err != nil {
				return n, err
			}
			n++
		}
	}
	return n, nil
}

func (ix *Index) expireLegacy(cutoff time.Time) (int, error) {
	return ExpireLegacy(filepath.Join(ix.dir, legacyDir), cutoff)
}

func (ix *Index) resolveLegacy(s *Set, cutoff time.Time, inHistory []bool) error {
	sortEntries(s.legacy)
	runs, err := LegacyRuns(filepath.Join(ix.dir, legacyDir))
	if err != nil {
		return err
	}
	for _, p := range runs {
		if info, err := os.Stat(p); err != nil || info.ModTime().Before(cutoff) {
			continue
		}
		if err := mergeLegacyRun(p, s.legacy, func(ord uint32) { inHistory[ord] = true }); err != nil {
			return err
		}
	}
	return nil
}

// mergeLegacyRun streams a sorted legacy run against the sorted entries and
// calls hit for every entry whose key is in the run.
func mergeLegacyRun(path string, group []planEntry, hit func(uint32)) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("open dedupe run: %w", err)
	}
	defer f.Close()
	br := bufio.NewReaderSize(f, 256<<10)
	var h [len(legacyMagic) + 8]byte
	if _, err := io.ReadFull(br, h[:]); err != nil || string(h[:len(legacyMagic)]) != legacyMagic {
		return fmt.Errorf("dedupe run %s: %w", path, errNotRun)
	}
	n := binary.LittleEndian.Uint64(h[len(legacyMagic):])
	var k Key
	i := 0
	for r := uint64(0); r < n && i < len(group); r++ {
		if _, err := io.ReadFull(br, k[:]); err != nil {
			return fmt.Errorf("read dedupe run %s: %w", path, err)
		}
		e := newPlanEntry(k, 0)
		for i < len(group) && (group[i].hi < e.hi || group[i].hi == e.hi && group[i].lo < e.lo) {
			i++
		}
		for j := i; j < len(group) && group[j].sameKey(e); j++ {
			hit(group[j].ord)
		}
	}
	return nil
}
