package spool

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/sgload/sgload/internal/durable"
)

// Scrubbed is what an erasure removed from the spool.
type Scrubbed struct {
	Segments        int   `json:"segments_rewritten"`
	Records         int   `json:"records_dropped"`
	Events          int64 `json:"events_removed"`
	Objects         int64 `json:"objects_removed"`
	DamagedLines    int   `json:"damaged_lines_removed"`
	QuarantineFiles int   `json:"quarantine_files_deleted"`
	CursorsMoved    int   `json:"cursors_moved"`
	// Committed lists the segments of done/ that lost records or events:
	// their manifests counted them before, so verify subtracts these.
	Committed []SegmentChange `json:"committed_segments_changed,omitempty"`
}

// SegmentChange is what an erasure took from one committed segment.
type SegmentChange struct {
	Path    string `json:"path"` // relative to done/, as manifests name it
	Records int64  `json:"records_dropped"`
	Events  int64  `json:"events_removed"`
}

// ErrPendingPlan means a flush plan is unfinished: its segments must not
// change under it.
var ErrPendingPlan = errors.New("a flush plan is unfinished")

// Forget removes from the spool every event and synced object for which
// drop is true: from the segments waiting for flush, from the committed ones
// kept in done/, and from snapshots of sync, by rewriting each segment that
// holds one (tmp, fsync, rename); every quarantined file for which drop is
// true of its content is deleted. Follower cursors (forward, tees) are moved
// to the same place in the rewritten segments.
//
// It needs the spool to itself: it takes the serve lock (a segment left open
// by a crash is recovered and sealed first) and the flush, sync and forward
// locks, and refuses while a flush plan is unfinished. Rewritten records
// lose their signature headers (the body no longer matches them); event i
// of a record keeps the sequence of its new position, inside the range the
// POST reserved.
func Forget(root string, drop func([]byte) bool) (Scrubbed, error) {
	var s Scrubbed
	d, err := Open(root)
	if err != nil {
		return s, err
	}
	w, err := OpenWriter(root, Options{MinFreeBytes: -1})
	if err != nil {
		return s, err // ErrBusy while serve runs
	}
	if err := w.Close(); err != nil { // seals what a crash left open
		return s, err
	}
	for _, name := range []string{LockServe, LockFlush, LockSync, LockForward} {
		l, err := d.Lock(name)
		if err != nil {
			return s, err
		}
		defer l.Unlock()
	}
	plans, _ := filepath.Glob(filepath.Join(d.FlushJournal(), "*.plan.json"))
	if len(plans) > 0 {
		return s, fmt.Errorf("%w (%s): run sgload flush to finish it first", ErrPendingPlan, filepath.Base(plans[0]))
	}
	cursors, err := readCursors(d)
	if err != nil {
		return s, err
	}
	var paths []string
	segs, err := d.Sealed()
	if err != nil {
		return s, err
	}
	for _, sg := range segs {
		paths = append(paths, sg.Path)
	}
	err = d.WalkDone(func(p, _ string, _ os.DirEntry) error { paths = append(paths, p); return nil })
	if err != nil {
		return s, err
	}
	for _, p := range paths {
		before := s
		if err := scrubSegment(p, drop, cursors, &s); err != nil {
			return s, err
		}
		if rel, err := filepath.Rel(d.Done(), p); err == nil && !strings.HasPrefix(rel, "..") && s.Segments > before.Segments {
			s.Committed = append(s.Committed, SegmentChange{Path: filepath.ToSlash(rel), Records: int64(s.Records - before.Records),
				Events: s.Events + s.Objects - before.Events - before.Objects})
		}
	}
	if err := d.recordCommittedChanges(s.Committed); err != nil {
		return s, err
	}
	for name, c := range cursors {
		if c.moved {
			if err := writeCursor(filepath.Join(d.Cursors(), name), c.pos); err != nil {
				return s, err
			}
			s.CursorsMoved++
		}
	}
	n, err := scrubQuarantine(d, drop)
	s.QuarantineFiles = n
	return s, err
}

type cursorFile struct {
	pos   Position
	moved bool
}

func readCursors(d Dir) (map[string]*cursorFile, error) {
	out := map[string]*cursorFile{}
	entries, err := os.ReadDir(d.Cursors())
	if errors.Is(err, os.ErrNotExist) {
		return out, nil
	}
	if err != nil {
		return nil, err
	}
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".json") {
			continue
		}
		p, ok, err := readCursor(filepath.Join(d.Cursors(), e.Name()))
		if err != nil {
			return nil, err
		}
		if ok {
			out[e.Name()] = &cursorFile{pos: p}
		}
	}
	return out, nil
}

func writeCursor(path string, p Position) error {
	b, _ := json.Marshal(p)
	return durable.WriteFile(path, b, 0o644)
}

// scrubSegment rewrites the segment at path without what drop selects, if
// it holds any.
func scrubSegment(path string, drop func([]byte) bool, cursors map[string]*cursorFile, s *Scrubbed) error {
	_, first, ok := ParseSegmentName(filepath.Base(path))
	if !ok {
		return nil
	}
	objects := ObjectCollection(relToRoot(path)) != ""
	r, err := OpenReader(path)
	if err != nil {
		return err
	}
	defer r.Close()
	var out bytes.Buffer
	changed := false
	// moves maps a record's old offset to its new one, and which of its
	// events went, for the cursors inside this segment.
	type move struct {
		newOff  int64
		dropped []int
	}
	moves := map[int64]move{}
	var removedRows int64 // objects removed from a snapshot, for its completion record
	for {
		off := r.Offset()
		rec, err := r.Next()
		if err == io.EOF {
			break
		}
		var ce *CorruptError
		if errors.As(err, &ce) {
			moves[off] = move{newOff: int64(out.Len())}
			if drop(ce.Line) {
				changed = true
				s.DamagedLines++
				continue
			}
			out.Write(ce.Line)
			continue
		}
		if err != nil {
			return err
		}
		m := move{newOff: int64(out.Len())}
		if objects && rec.Header[HeaderSnapshot] == "complete" && removedRows > 0 {
			rec = withFewerRows(rec, removedRows)
			changed = true
		}
		events, ok := rec.Split()
		var keep [][]byte
		if ok {
			for i, ev := range events {
				if drop(ev) {
					m.dropped = append(m.dropped, i)
					continue
				}
				keep = append(keep, ev)
			}
		} else if drop(rec.Body) {
			m.dropped = []int{0}
		}
		if len(m.dropped) == 0 {
			line, err := EncodeRecord(rec)
			if err != nil {
				return err
			}
			out.Write(line)
			moves[off] = m
			continue
		}
		changed = true
		if objects {
			s.Objects += int64(len(m.dropped))
			removedRows += int64(len(m.dropped))
		} else {
			s.Events += int64(len(m.dropped))
		}
		moves[off] = m
		if len(keep) == 0 || !ok {
			s.Records++
			continue
		}
		rec.Body = append(append([]byte("["), bytes.Join(keep, []byte(","))...), ']')
		rec.Events = len(keep)
		hdr := map[string]string{}
		for k, v := range rec.Header {
			if !strings.HasPrefix(k, "X-Twilio-Email-Event-Webhook-") {
				hdr[k] = v
			}
		}
		hdr["Sgload-Rewritten"] = "forget"
		rec.Header = hdr
		line, err := EncodeRecord(rec)
		if err != nil {
			return err
		}
		out.Write(line)
	}
	if !changed {
		return nil
	}
	if err := durable.WriteFile(path, out.Bytes(), 0o644); err != nil {
		return fmt.Errorf("rewrite segment %s: %w", path, err)
	}
	s.Segments++
	for _, c := range cursors {
		if c.pos.Segment != first || objects {
			continue
		}
		mv, ok := moves[c.pos.Offset]
		if !ok {
			continue // at the end of the segment: the end moved with it
		}
		np := Position{Segment: first, Offset: mv.newOff, Event: c.pos.Event}
		for _, i := range mv.dropped {
			if i < c.pos.Event {
				np.Event--
			}
		}
		if np != c.pos {
			c.pos, c.moved = np, true
		}
	}
	// A cursor at the old end of the segment points past the new end: the
	// follower takes that as "done with this segment", which it is.
	return nil
}

// withFewerRows returns the completion record of a snapshot with its row
// count lowered by n.
func withFewerRows(rec *Record, n int64) *Record {
	var body []map[string]any // one object: the snapshot's summary
	if err := json.Unmarshal(rec.Body, &body); err != nil || len(body) != 1 {
		return rec
	}
	if rows, ok := body[0]["rows"].(float64); ok {
		body[0]["rows"] = max(0, int64(rows)-n)
	}
	b, err := json.Marshal(body)
	if err != nil {
		return rec
	}
	cp := *rec
	cp.Body = b
	return &cp
}

// relToRoot is path relative to its spool root: the part from the spool's
// own folders on (events/..., objects/..., done/...), with done/ dropped.
func relToRoot(path string) string {
	p := filepath.ToSlash(path)
	for _, dir := range []string{"/" + DoneDir + "/", "/"} {
		for _, top := range []string{EventsDir, ObjectsDir} {
			if i := strings.LastIndex(p, dir+top+"/"); i >= 0 {
				return p[i+len(dir):]
			}
		}
	}
	return p
}

// scrubQuarantine deletes the quarantined files that drop selects, looking
// at the file and, for a quarantined body, at the body decoded from its
// base64.
func scrubQuarantine(d Dir, drop func([]byte) bool) (int, error) {
	entries, err := os.ReadDir(d.Quarantine())
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	n := 0
	for _, e := range entries {
		p := filepath.Join(d.Quarantine(), e.Name())
		b, err := os.ReadFile(p)
		if err != nil {
			return n, err
		}
		hit := drop(b)
		if !hit && strings.HasSuffix(e.Name(), ".json") {
			var q Quarantined
			if json.Unmarshal(b, &q) == nil {
				hit = drop(q.Body)
			}
		}
		if hit {
			if err := os.Remove(p); err != nil {
				return n, err
			}
			n++
		}
	}
	if n > 0 {
		return n, durable.SyncDir(d.Quarantine())
	}
	return n, nil
}

// committedChangesFile keeps, per committed segment, what erasures took
// from it since its manifest counted it.
func (d Dir) committedChangesFile() string {
	return filepath.Join(d.Audits(), "committed-segments.json")
}

func (d Dir) recordCommittedChanges(changes []SegmentChange) error {
	if len(changes) == 0 {
		return nil
	}
	all, err := d.CommittedChanges()
	if err != nil {
		return err
	}
	for _, c := range changes {
		cur := all[c.Path]
		cur.Path = c.Path
		cur.Records += c.Records
		cur.Events += c.Events
		all[c.Path] = cur
	}
	if err := durable.MkdirAll(d.Audits(), 0o755); err != nil {
		return err
	}
	b, _ := json.MarshalIndent(all, "", "  ")
	return durable.WriteFile(d.committedChangesFile(), b, 0o644)
}

// CommittedChanges returns what erasures took from each committed segment
// (by its path relative to done/), for verify to expect.
func (d Dir) CommittedChanges() (map[string]SegmentChange, error) {
	all := map[string]SegmentChange{}
	b, err := os.ReadFile(d.committedChangesFile())
	if errors.Is(err, os.ErrNotExist) {
		return all, nil
	}
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal(b, &all); err != nil {
		return nil, fmt.Errorf("%s: %w", d.committedChangesFile(), err)
	}
	return all, nil
}
