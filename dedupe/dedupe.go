// Package dedupe keeps the history that lets flush drop events a
// destination already holds: SendGrid delivers at least once (and retries a
// whole batch whose 2xx it did not see), so the same event can reach the
// spool twice, hours apart.
//
// The rule (which events are the same) is schema's; this package remembers
// keys. An event is a duplicate when its key was seen earlier in the same
// plan, or was committed to the same destination within the window
// (default 72 h). The history belongs to a destination (bucket + prefix),
// one folder each, so a flush into a new destination starts empty.
//
// The history is a small log-structured store: each committed plan adds an
// immutable sorted run of its keys, with a block index and a Bloom filter;
// runs of similar size are merged (four at a time), so a lookup consults a
// few runs whatever the history's length, and mostly only their Bloom
// filters. Time per event stays flat as the history grows, and memory holds
// one plan's keys, the runs' indexes (1/16 byte a key) and one run's filter
// (1.25 bytes a key) at a time.
package dedupe

import (
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/sgload/sgload/internal/durable"
	"github.com/sgload/sgload/schema"
)

// Key is a dedupe key (schema.Key).
type Key = schema.Key

// Set collects the keys of one plan's events, then learns which are
// duplicates.
type Set struct {
	entries []planEntry
	legacy  []planEntry
	events  int
}

// planEntry is a key of the plan's event ord, its halves as big-endian
// integers so that sorting compares two numbers instead of 16 bytes.
type planEntry struct {
	hi, lo uint64
	ord    uint32
}

func newPlanEntry(k Key, ord int) planEntry {
	return planEntry{hi: binary.BigEndian.Uint64(k[:8]), lo: binary.BigEndian.Uint64(k[8:]), ord: uint32(ord)}
}

func (e planEntry) sameKey(o planEntry) bool { return e.hi == o.hi && e.lo == o.lo }

// Add records the key of event number ord (0, 1, 2, ... in plan order).
func (s *Set) Add(ord int, k Key) {
	s.entries = append(s.entries, newPlanEntry(k, ord))
	s.events = max(s.events, ord+1)
}

// Grow makes room for n more keys, so that adding a plan's keys does not
// copy them again and again.
func (s *Set) Grow(n int) { s.entries = slices.Grow(s.entries, n) }

// Merge moves o's keys into s, leaving o empty, its room kept for reuse.
func (s *Set) Merge(o *Set) {
	s.entries = append(s.entries, o.entries...)
	s.legacy = append(s.legacy, o.legacy...)
	s.events = max(s.events, o.events)
	o.entries, o.legacy, o.events = o.entries[:0], o.legacy[:0], 0
}

// Len is the number of keys.
func (s *Set) Len() int { return len(s.entries) }

// Result says which events of a plan are duplicates.
type Result struct {
	dup []bool
	// InPlan and InHistory count duplicates found within the plan and
	// against the destination's history.
	InPlan, InHistory int
}

// Dup reports whether event ord is a duplicate.
func (r *Result) Dup(ord int) bool { return ord < len(r.dup) && r.dup[ord] }

// Index is one destination's history, in a folder of its own.
type Index struct {
	dir  string
	runs map[string]*run
}

const (
	runSuffix     = ".run"
	pendingSuffix = ".pending"
	intentFile    = "merge.intent"
	legacyDir     = "legacy"
)

// Open opens (creating) the history folder dir, finishing or undoing a
// merge a crash interrupted.
func Open(dir string) (*Index, error) {
	if err := durable.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	ix := &Index{dir: dir, runs: map[string]*run{}}
	if err := ix.recoverMerge(); err != nil {
		return nil, err
	}
	return ix, nil
}

// Dir is the history's folder.
func (ix *Index) Dir() string { return ix.dir }

// current returns the committed runs, opening new ones and forgetting
// deleted ones.
func (ix *Index) current() ([]*run, error) {
	entries, err := os.ReadDir(ix.dir)
	if err != nil {
		return nil, fmt.Errorf("list dedupe history: %w", err)
	}
	seen := map[string]bool{}
	var out []*run
	for _, e := range entries {
		name := e.Name()
		if !strings.HasSuffix(name, runSuffix) {
			continue
		}
		seen[name] = true
		r := ix.runs[name]
		if r == nil {
			if r, err = openRun(filepath.Join(ix.dir, name), name); err != nil {
				return nil, err
			}
			ix.runs[name] = r
		}
		out = append(out, r)
	}
	for name := range ix.runs {
		if !seen[name] {
			delete(ix.runs, name)
		}
	}
	return out, nil
}

// Minute is t in Unix minutes, the clock of history entries.
func Minute(t time.Time) uint32 { return uint32(t.Unix() / 60) }

// Resolve sorts the set and decides which of its events are duplicates:
// a key seen earlier in the plan, or committed to the destination at or
// after cutoff. The set is then ready for WritePending.
func (ix *Index) Resolve(s *Set, cutoff time.Time) (*Result, error) {
	sortEntries(s.entries)
	res := &Result{dup: make([]bool, s.events)}
	// Within the plan: every later occurrence of a key is a duplicate.
	uniq := make([]ukey, 0, len(s.entries))
	firstOrd := make([]uint32, 0, len(s.entries))
	for i, e := range s.entries {
		if i > 0 && e.sameKey(s.entries[i-1]) {
			res.dup[e.ord] = true
			continue
		}
		uniq = append(uniq, ukey{e.hi, e.lo})
		firstOrd = append(firstOrd, e.ord)
	}
	inHistory := make([]bool, s.events)
	found := make([]bool, len(uniq))
	runs, err := ix.current()
	if err != nil {
		return nil, err
	}
	since := Minute(cutoff)
	for _, r := range runs {
		if r.max < since {
			continue // expired whole; Maintain deletes it
		}
		hit := func(i int, minute uint32) {
			if minute >= since {
				found[i] = true
			}
		}
		if err := ix.probe(r, uniq, found, hit); err != nil {
			return nil, err
		}
	}
	for i, f := range found {
		if f {
			inHistory[firstOrd[i]] = true
		}
	}
	if len(s.legacy) > 0 {
		if err := ix.resolveLegacy(s, cutoff, inHistory); err != nil {
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

// probe looks the keys not found yet up in r. A run not much larger than
// the plan is read whole, in order (about as cheap as filter probes); a
// larger one is asked through its Bloom filter, read for the occasion (not
// kept: memory stays flat as the history grows, and reading 1.25 bytes a key
// costs little), and only the blocks that may hold a candidate are read.
func (ix *Index) probe(r *run, keys []ukey, found []bool, hit func(int, uint32)) error {
	if r.n <= 2*int64(len(keys)) {
		sc, err := r.scan()
		if err != nil {
			return err
		}
		defer sc.close()
		i := 0
		for i < len(keys) {
			ok, err := sc.next()
			if err != nil || !ok {
				return err
			}
			for i < len(keys) && keys[i].less(sc.cur.ukey) {
				i++
			}
			if i < len(keys) && keys[i] == sc.cur.ukey {
				hit(i, sc.cur.minute)
			}
		}
		return nil
	}
	f, err := r.loadBloom()
	if err != nil {
		return err
	}
	var cand []ukey
	var at []int
	for i, k := range keys {
		if !found[i] && f.Check(k.bloomHash()) {
			cand = append(cand, k)
			at = append(at, i)
		}
	}
	return r.lookup(cand, func(j int, minute uint32) { hit(at[j], minute) })
}

func sortEntries(es []planEntry) {
	slices.SortFunc(es, func(a, b planEntry) int {
		if c := cmp.Compare(a.hi, b.hi); c != 0 {
			return c
		}
		if c := cmp.Compare(a.lo, b.lo); c != 0 {
			return c
		}
		return cmp.Compare(a.ord, b.ord)
	})
}

// WritePending stores the keys of the events of s that res keeps, stamped
// with now, as plan id's pending run: part of the history only once Commit
// renames it, so a plan that is redone after a crash never finds its own
// events. Duplicates add nothing: the destination's copy keeps its own
// time.
func (ix *Index) WritePending(id string, s *Set, res *Result, now time.Time) error {
	minute := Minute(now)
	i := 0
	next := func() (entry, bool, error) {
		for ; i < len(s.entries); i++ {
			if e := s.entries[i]; !res.Dup(int(e.ord)) {
				i++
				return entry{ukey: ukey{e.hi, e.lo}, minute: minute}, true, nil
			}
		}
		return entry{}, false, nil
	}
	_, err := writeRun(filepath.Join(ix.dir, id+pendingSuffix), int64(len(s.entries)), next)
	return err
}

// Commit makes plan id's pending run part of the history. A run the plan
// committed before a crash is not committed twice: its pending file is
// gone.
func (ix *Index) Commit(id string) error {
	p := filepath.Join(ix.dir, id+pendingSuffix)
	// A unique name: the same plan id can be committed again later (a
	// replay of the same segments), and must not replace the first run.
	name := fmt.Sprintf("%s-%08x%s", id, rand.Uint32(), runSuffix)
	if err := durable.Rename(p, filepath.Join(ix.dir, name)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("commit dedupe run: %w", err)
	}
	return nil
}

// Pending reports whether plan id's pending run is there: written, and
// neither committed nor aborted.
func (ix *Index) Pending(id string) bool {
	_, err := os.Stat(filepath.Join(ix.dir, id+pendingSuffix))
	return err == nil
}

// Abort drops plan id's pending run.
func (ix *Index) Abort(id string) error {
	if err := os.Remove(filepath.Join(ix.dir, id+pendingSuffix)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return durable.SyncDir(ix.dir)
}

// Stats describe the history.
type Stats struct {
	Runs    int   `json:"runs"`
	Keys    int64 `json:"keys"`
	Bytes   int64 `json:"bytes"`
	Expired int   `json:"expired_runs"`
	Merged  int   `json:"merged_runs"`
}

// Maintain deletes runs whose every key is older than cutoff and merges
// runs of similar size, so lookups stay cheap. It returns the history's
// size after.
func (ix *Index) Maintain(cutoff time.Time) (Stats, error) {
	var st Stats
	runs, err := ix.current()
	if err != nil {
		return st, err
	}
	since := Minute(cutoff)
	var live []*run
	for _, r := range runs {
		if r.max < since {
			if err := os.Remove(r.path); err != nil {
				return st, fmt.Errorf("expire dedupe run: %w", err)
			}
			st.Expired++
			continue
		}
		live = append(live, r)
	}
	if n, err := ix.expireLegacy(cutoff); err != nil {
		return st, err
	} else {
		st.Expired += n
	}
	for {
		group := mergeGroup(live)
		if group == nil {
			break
		}
		merged, err := ix.merge(group, since)
		if err != nil {
			return st, err
		}
		st.Merged += len(group)
		live = slices.DeleteFunc(live, func(r *run) bool { return slices.Contains(group, r) })
		if merged != nil {
			live = append(live, merged)
		}
	}
	if _, err := ix.current(); err != nil {
		return st, err
	}
	for _, r := range live {
		st.Runs++
		st.Keys += r.n
		st.Bytes += r.bloomOff + r.bloomBytes + footerSize
	}
	return st, nil
}

// mergeFanIn is how many runs of one size class are merged into one.
const mergeFanIn = 4

// tier is a run's size class: runs within a factor of mergeFanIn of each
// other share one.
func tier(n int64) int {
	t := 0
	for n >= 4096 {
		n /= mergeFanIn
		t++
	}
	return t
}

// mergeGroup picks the runs to merge next: the smallest size class with
// mergeFanIn runs or more. Merging size-tiered keeps the number of runs
// logarithmic in the history's length, and writes each key a logarithmic
// number of times.
func mergeGroup(runs []*run) []*run {
	byTier := map[int][]*run{}
	for _, r := range runs {
		byTier[tier(r.n)] = append(byTier[tier(r.n)], r)
	}
	tiers := make([]int, 0, len(byTier))
	for t := range byTier {
		tiers = append(tiers, t)
	}
	sort.Ints(tiers)
	for _, t := range tiers {
		if g := byTier[t]; len(g) >= mergeFanIn {
			sort.Slice(g, func(i, j int) bool { return g[i].name < g[j].name })
			return g
		}
	}
	return nil
}
