package loader

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"

	"github.com/sgload/sgload/internal/durable"
	"github.com/sgload/sgload/spool"
)

// ReplayOptions choose what a replay loads.
type ReplayOptions struct {
	Filter
	// FromStart replays every committed segment, not only those after the
	// last replay into the same destination.
	FromStart bool
}

// Replay flushes again the committed segments the spool keeps in done/
// (for --retain) into opts' destination, with that destination's own dedupe
// history: into a new destination everything is written, into one that
// holds the events nothing is. It runs the flush protocol (same journal,
// manifests of kind "replay", crash-safe the same way, one at a time with
// flush under the flush lock); the segments stay in done/, and a cursor per
// destination (state/replay/<destination>.json) remembers how far replays
// into it went, so a rerun after a kill goes on where it stopped.
func Replay(ctx context.Context, opts Options, r ReplayOptions) (*Summary, error) {
	filter := r.Filter
	return run(ctx, opts, &replaySource{filter: &filter, fromStart: r.FromStart})
}

// replaySource hands out plans of committed segments.
type replaySource struct {
	filter    *Filter
	fromStart bool
	segs      []spool.Segment // still to replay, in order
	runID     int64
	plans     int
}

type replayCursor struct {
	// After is the last segment replayed (relative to the spool root).
	After string `json:"after"`
}

func replayCursorPath(d spool.Dir, dest string) string {
	return filepath.Join(d.State(), "replay", dest+".json")
}

func writeReplayCursor(d spool.Dir, dest, after string) error {
	p := replayCursorPath(d, dest)
	if err := durable.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	b, _ := json.Marshal(replayCursor{After: after})
	return durable.WriteFile(p, b, 0o644)
}

// open lists the committed segments to replay and returns their bytes.
func (r *replaySource) open(f *flusher) (int64, error) {
	r.runID = f.opts.Now().UnixMicro()
	var all []spool.Segment
	err := f.spool.WalkDone(func(p, rel string, d os.DirEntry) error {
		node, first, ok := spool.ParseSegmentName(d.Name())
		if !ok || (r.filter.EventsOnly && spool.ObjectCollection(rel) != "") {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		all = append(all, spool.Segment{Path: p, Node: node, FirstSeq: first, Size: info.Size()})
		return nil
	})
	if err != nil {
		return 0, err
	}
	sort.Slice(all, func(i, j int) bool {
		if all[i].FirstSeq != all[j].FirstSeq {
			return all[i].FirstSeq < all[j].FirstSeq
		}
		return all[i].Path < all[j].Path
	})
	after := ""
	if !r.fromStart {
		b, err := os.ReadFile(replayCursorPath(f.spool, f.dest))
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return 0, err
		}
		var c replayCursor
		if err == nil {
			if err := json.Unmarshal(b, &c); err != nil {
				return 0, fmt.Errorf("replay cursor: %w", err)
			}
		}
		after = c.After
	}
	var total int64
	skipping := after != ""
	for _, s := range all {
		rel := f.spool.Rel(s.Path)
		rel = rel[len(spool.DoneDir)+1:]
		if skipping {
			if rel == after {
				skipping = false
			}
			continue
		}
		r.segs = append(r.segs, s)
		total += s.Size
	}
	if skipping { // the cursor's segment was pruned: replay what is there
		r.segs = nil
		for _, s := range all {
			if f.spool.Rel(s.Path)[len(spool.DoneDir)+1:] > after {
				r.segs = append(r.segs, s)
				total += s.Size
			}
		}
	}
	return total, nil
}

// next returns the next plan: the oldest committed segments not replayed
// yet, up to MaxPlanBytes. Its id starts with "f", which no flush plan's id
// (a Unix-microsecond sequence) does for millennia, so replays never name a
// manifest a flush wrote.
func (r *replaySource) next(f *flusher) *Plan {
	if len(r.segs) == 0 {
		return nil
	}
	id := fmt.Sprintf("f%015x", (r.runID+int64(r.plans))&(1<<60-1))
	r.plans++
	p := &Plan{Node: f.node, Created: f.opts.Now().UTC(), ID: id, Workers: f.opts.Workers, Replay: true, Filter: r.filter}
	var size int64
	for len(r.segs) > 0 {
		s := r.segs[0]
		if len(p.Segments) > 0 && size+s.Size > f.opts.MaxPlanBytes {
			break
		}
		// The plan names segments as flush's do, relative to the root;
		// reading resolves them under done/.
		p.Segments = append(p.Segments, PlanSegment{Path: f.spool.Rel(s.Path)[len(spool.DoneDir)+1:], Bytes: s.Size})
		size += s.Size
		r.segs = r.segs[1:]
	}
	return p
}
