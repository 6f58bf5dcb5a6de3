package dedupe

import (
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"

	"github.com/sgload/sgload/internal/durable"
)

// mergeIntent is written before a merge so that a crash in the middle is
// finished (output written: delete the inputs) or undone (not written:
// nothing to do but sweep its temporary file) by the next Open.
type mergeIntent struct {
	Output string   `json:"output"`
	Inputs []string `json:"inputs"`
}

// merge writes the union of group's entries younger than since as one run
// (a key in several runs keeps its latest minute), then deletes the group.
// It returns the new run, nil if every entry had expired.
func (ix *Index) merge(group []*run, since uint32) (*run, error) {
	in := mergeIntent{Output: fmt.Sprintf("m-%016x%s", rand.Uint64(), runSuffix)}
	var capacity int64
	for _, r := range group {
		in.Inputs = append(in.Inputs, r.name)
		capacity += r.n
	}
	b, _ := json.Marshal(in)
	if err := durable.WriteFile(filepath.Join(ix.dir, intentFile), b, 0o644); err != nil {
		return nil, fmt.Errorf("dedupe merge: %w", err)
	}
	var scans []*scan // those not at their end, each on its next entry
	defer func() {
		for _, sc := range scans {
			sc.close()
		}
	}()
	for _, r := range group {
		sc, err := r.scan()
		if err != nil {
			return nil, err
		}
		if ok, err := sc.next(); err != nil || !ok {
			sc.close()
			if err != nil {
				return nil, err
			}
			continue
		}
		scans = append(scans, sc)
	}
	// next returns the union's next key in order, with the latest minute of
	// its copies, skipping expired keys. Runs are few (mergeFanIn), so the
	// smallest is found by a linear look rather than a heap.
	next := func() (entry, bool, error) {
		for len(scans) > 0 {
			cur := scans[0].cur
			for _, sc := range scans[1:] {
				if sc.cur.less(cur.ukey) {
					cur = sc.cur
				}
			}
			for i := 0; i < len(scans); {
				sc := scans[i]
				if sc.cur.ukey != cur.ukey {
					i++
					continue
				}
				cur.minute = max(cur.minute, sc.cur.minute)
				ok, err := sc.next()
				if err != nil {
					return entry{}, false, err
				}
				if !ok {
					sc.close()
					scans = append(scans[:i], scans[i+1:]...)
					continue
				}
				i++
			}
			if cur.minute >= since {
				return cur, true, nil
			}
		}
		return entry{}, false, nil
	}
	out := filepath.Join(ix.dir, in.Output)
	n, err := writeRun(out, capacity, next)
	if err != nil {
		return nil, err
	}
	if err := ix.finishMerge(in); err != nil {
		return nil, err
	}
	if n == 0 {
		if err := os.Remove(out); err != nil {
			return nil, err
		}
		return nil, nil
	}
	r, err := openRun(out, in.Output)
	if err != nil {
		return nil, err
	}
	ix.runs[in.Output] = r
	return r, nil
}

// finishMerge deletes a merge's inputs once its output is durable, then the
// intent.
func (ix *Index) finishMerge(in mergeIntent) error {
	for _, name := range in.Inputs {
		if err := os.Remove(filepath.Join(ix.dir, name)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("dedupe merge: %w", err)
		}
		delete(ix.runs, name)
	}
	if err := durable.SyncDir(ix.dir); err != nil {
		return err
	}
	if err := os.Remove(filepath.Join(ix.dir, intentFile)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return durable.SyncDir(ix.dir)
}

// recoverMerge finishes or forgets a merge a crash interrupted, and sweeps
// temporary files of unfinished writes.
func (ix *Index) recoverMerge() error {
	if _, err := durable.Sweep(ix.dir); err != nil {
		return err
	}
	b, err := os.ReadFile(filepath.Join(ix.dir, intentFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("dedupe merge intent: %w", err)
	}
	var in mergeIntent
	if err := json.Unmarshal(b, &in); err != nil || in.Output == "" {
		// The intent is written durably before the merge starts; a torn one
		// means the merge never started.
		return os.Remove(filepath.Join(ix.dir, intentFile))
	}
	if _, err := os.Stat(filepath.Join(ix.dir, in.Output)); err == nil {
		return ix.finishMerge(in)
	}
	return os.Remove(filepath.Join(ix.dir, intentFile))
}
