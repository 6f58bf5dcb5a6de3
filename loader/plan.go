package loader

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/sgload/sgload/internal/durable"
	"github.com/sgload/sgload/spool"
)

// Plan is one unit of the commit protocol.
type Plan struct {
	ID       string        `json:"id"`
	Node     string        `json:"node"`
	Created  time.Time     `json:"created"`
	Segments []PlanSegment `json:"segments"`
	// Workers is how many mappers split the plan's records; a redo uses the
	// same number, so with the same tuning flags it writes the same objects.
	// Correctness does not rest on that: undo deletes every object the
	// first attempt journaled before the redo writes any.
	Workers int `json:"workers"`
	// Destination is the id of the destination the plan writes to; a redo
	// refuses another.
	Destination string `json:"destination,omitempty"`
	// Replay marks a plan of committed segments (sgload replay): they stay
	// in done/, and Filter may leave events out.
	Replay bool    `json:"replay,omitempty"`
	Filter *Filter `json:"filter,omitempty"`
}

// Filter chooses which events a replay loads.
type Filter struct {
	// Since and Until bound the event's own time (timestamp), [Since, Until).
	Since time.Time `json:"since,omitzero"`
	Until time.Time `json:"until,omitzero"`
	// Types are the event tables to load; empty means all.
	Types []string `json:"types,omitempty"`
	// Events, when set, leaves object snapshots out.
	EventsOnly bool `json:"events_only,omitempty"`
}

// keeps reports whether the filter loads an event of table at micros (0:
// no readable time, which a time bound leaves out).
func (f *Filter) keeps(table string, micros int64) bool {
	if f == nil {
		return true
	}
	if len(f.Types) > 0 && !slices.Contains(f.Types, table) {
		return false
	}
	if !f.Since.IsZero() && (micros == 0 || micros < f.Since.UnixMicro()) {
		return false
	}
	if !f.Until.IsZero() && (micros == 0 || micros >= f.Until.UnixMicro()) {
		return false
	}
	return true
}

// PlanSegment is a segment in a plan, by its path under the spool root.
type PlanSegment struct {
	Path  string `json:"path"` // e.g. events/node-0000….ndjson
	Bytes int64  `json:"bytes"`
}

// journal is the local record of a plan in flight: the plan file and the
// append-only list of object keys whose upload has started.
type journal struct {
	dir string
}

func (j journal) planPath(id string) string    { return filepath.Join(j.dir, id+".plan.json") }
func (j journal) intentsPath(id string) string { return filepath.Join(j.dir, id+".intents") }
func (j journal) workDir(id string) string     { return filepath.Join(j.dir, id+".work") }

func (j journal) write(p *Plan) error {
	b, err := json.MarshalIndent(p, "", "  ")
	if err != nil {
		return err
	}
	return durable.WriteFile(j.planPath(p.ID), append(b, '\n'), 0o644)
}

// pending returns the plans journaled but not finished, oldest first.
func (j journal) pending() ([]*Plan, error) {
	entries, err := os.ReadDir(j.dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list flush journal: %w", err)
	}
	var plans []*Plan
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".plan.json") {
			continue
		}
		b, err := os.ReadFile(filepath.Join(j.dir, e.Name()))
		if err != nil {
			return nil, fmt.Errorf("read plan: %w", err)
		}
		var p Plan
		if err := json.Unmarshal(b, &p); err != nil {
			return nil, fmt.Errorf("plan %s: %w", e.Name(), err)
		}
		plans = append(plans, &p)
	}
	sort.Slice(plans, func(a, b int) bool { return plans[a].ID < plans[b].ID })
	return plans, nil
}

// addIntent records, durably, that an upload of key is about to start.
func (j journal) addIntent(id, key string) error {
	f, err := os.OpenFile(j.intentsPath(id), os.O_WRONLY|os.O_APPEND, 0o644)
	created := errors.Is(err, os.ErrNotExist)
	if created {
		f, err = os.OpenFile(j.intentsPath(id), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	}
	if err != nil {
		return fmt.Errorf("journal intent: %w", err)
	}
	defer f.Close()
	if _, err := f.WriteString(key + "\n"); err != nil {
		return fmt.Errorf("journal intent: %w", err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("journal intent: %w", err)
	}
	if created {
		// A new file is durable only once its folder entry is: without
		// it, a power cut could lose the list of objects to undo.
		if err := durable.SyncDir(j.dir); err != nil {
			return fmt.Errorf("journal intent: %w", err)
		}
	}
	return nil
}

func (j journal) intents(id string) ([]string, error) {
	f, err := os.Open(j.intentsPath(id))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read intents: %w", err)
	}
	defer f.Close()
	var keys []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k := strings.TrimSpace(sc.Text()); k != "" {
			keys = append(keys, k)
		}
	}
	return keys, sc.Err()
}

// clear drops what an attempt at the plan left beside its plan file: the
// intents and the work folder.
func (j journal) clear(id string) error {
	if err := os.RemoveAll(j.workDir(id)); err != nil {
		return err
	}
	if err := os.Remove(j.intentsPath(id)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

// remove drops the plan's journal; the plan file goes last, so a crash in
// between leaves a plan that finishes again harmlessly.
func (j journal) remove(id string) error {
	if err := j.clear(id); err != nil {
		return err
	}
	if err := os.Remove(j.planPath(id)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return durable.SyncDir(j.dir)
}

// nextPlan picks the oldest sealed segments, up to maxBytes (at least one).
func nextPlan(d spool.Dir, node string, maxBytes int64, workers int, now time.Time) (*Plan, error) {
	segs, err := d.Sealed()
	if err != nil {
		return nil, err
	}
	if len(segs) == 0 {
		return nil, nil
	}
	p := &Plan{Node: node, Created: now.UTC(), ID: fmt.Sprintf("%016x", segs[0].FirstSeq), Workers: workers}
	var total int64
	for _, s := range segs {
		if len(p.Segments) > 0 && total+s.Size > maxBytes {
			break
		}
		p.Segments = append(p.Segments, PlanSegment{Path: d.Rel(s.Path), Bytes: s.Size})
		total += s.Size
	}
	return p, nil
}
