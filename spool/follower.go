package spool

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync/atomic"

	"github.com/sgload/sgload/internal/durable"
)

// Position is a place in the stream of event records: the segment (by its
// first sequence) and the byte offset of the next record in it.
type Position struct {
	Segment int64 `json:"segment"`
	Offset  int64 `json:"offset"`
	// Event counts the events of the record at Offset already handled, for
	// a reader that stops inside a record (forward's batches do).
	Event int `json:"event,omitempty"`
}

// Follower reads every event record of the spool in order, from a cursor
// it persists under state/cursors/<name>.json, following records into the
// open segment as serve appends them and into done/ after flush moves
// them. Forward and the raw tee each have one; flush keeps committed
// segments in done/ until every follower has passed them.
type Follower struct {
	d         Dir
	name      string
	pos       Position
	start     Position // where the record last returned by Next starts
	seg       *followed
	hadCursor bool
	// committed is the stored cursor, read by Lag from metrics scrapes
	// while Next moves pos.
	committed atomic.Pointer[Position]
}

type followed struct {
	first int64
	path  string
	r     *Reader
}

// OpenFollower opens (creating) the follower called name.
func OpenFollower(d Dir, name string) (*Follower, error) {
	f := &Follower{d: d, name: name}
	if err := durable.MkdirAll(filepath.Dir(f.cursorPath()), 0o755); err != nil {
		return nil, err
	}
	p, ok, err := readCursor(f.cursorPath())
	if err != nil {
		return nil, err
	}
	f.pos, f.hadCursor = p, ok
	f.committed.Store(&p)
	return f, nil
}

// readCursor reads a stored cursor; ok is false when there is none.
func readCursor(path string) (p Position, ok bool, err error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return p, false, nil
	}
	if err != nil {
		return p, false, err
	}
	if err := json.Unmarshal(b, &p); err != nil {
		return p, false, fmt.Errorf("cursor %s: %w", path, err)
	}
	return p, true, nil
}

func (f *Follower) cursorPath() string {
	return filepath.Join(f.d.Cursors(), f.name+".json")
}

// Position is the cursor: where the next record starts.
func (f *Follower) Position() Position { return f.pos }

// Stored is the cursor last stored (by Commit, or found when opened).
func (f *Follower) Stored() Position { return *f.committed.Load() }

// RecordStart is where the record last returned by Next starts.
func (f *Follower) RecordStart() Position { return f.start }

// HasCursor reports whether the follower had a stored cursor when opened.
func (f *Follower) HasCursor() bool { return f.hadCursor }

// StartAtEnd places a follower without a cursor after every record written
// so far (a new raw tee forwards new POSTs only). Call it before serve
// appends anything.
func (f *Follower) StartAtEnd() error {
	segs, err := f.segments()
	if err != nil {
		return err
	}
	if len(segs) > 0 {
		f.pos = Position{Segment: segs[len(segs)-1].first + 1}
	}
	return f.Commit(f.pos)
}

// Commit stores p durably as the cursor; a restart resumes there.
func (f *Follower) Commit(p Position) error {
	b, _ := json.Marshal(p)
	if err := durable.WriteFile(f.cursorPath(), b, 0o644); err != nil {
		return err
	}
	f.committed.Store(&p)
	return nil
}

// Close releases the open segment.
func (f *Follower) Close() error {
	if f.seg != nil {
		return f.seg.r.Close()
	}
	return nil
}

type located struct {
	first  int64
	path   string
	sealed bool
	size   int64
}

// segments lists the event segments in events/ and done/events/, by first
// sequence.
func (f *Follower) segments() ([]located, error) {
	var out []located
	for _, src := range []struct {
		dir, suffix string
		sealed      bool
	}{{f.d.Events(), SealedSuffix, true}, {f.d.Events(), OpenSuffix, false}, {filepath.Join(f.d.Done(), EventsDir), SealedSuffix, true}} {
		segs, err := ListSegments(src.dir, src.suffix)
		if err != nil {
			return nil, err
		}
		for _, s := range segs {
			out = append(out, located{first: s.FirstSeq, path: s.Path, sealed: src.sealed, size: s.Size})
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].first != out[j].first {
			return out[i].first < out[j].first
		}
		return out[i].sealed && !out[j].sealed // prefer the sealed copy of a name
	})
	return out, nil
}

// Next returns the next record and the position after it, or io.EOF when
// there is none yet (the follower can be called again later).
func (f *Follower) Next() (*Record, Position, error) {
	for {
		if f.seg == nil {
			segs, err := f.segments()
			if err != nil {
				return nil, f.pos, err
			}
			var next *located
			for i := range segs {
				if segs[i].first >= f.pos.Segment {
					next = &segs[i]
					break
				}
			}
			if next == nil {
				return nil, f.pos, io.EOF
			}
			if next.first != f.pos.Segment {
				f.pos = Position{Segment: next.first} // the segment we were in is gone, or done
			}
			r, err := OpenReader(next.path)
			if err != nil {
				if errors.Is(err, os.ErrNotExist) {
					continue // moved to done/ meanwhile
				}
				return nil, f.pos, err
			}
			f.pos.Event = 0
			if err := r.SeekRecord(f.pos.Offset); err != nil {
				_ = r.Close()
				return nil, f.pos, err
			}
			f.seg = &followed{first: next.first, path: next.path, r: r}
		}
		f.start = Position{Segment: f.seg.first, Offset: f.seg.r.Offset()}
		rec, err := f.seg.r.Next()
		if err == nil {
			f.pos.Offset, f.pos.Event = f.seg.r.Offset(), 0
			return rec, f.pos, nil
		}
		var ce *CorruptError
		if err != io.EOF && !(errors.As(err, &ce) && ce.Torn) {
			if ce != nil {
				// A damaged line in a sealed segment: skip it, as flush does.
				f.pos.Offset = f.seg.r.Offset()
				continue
			}
			return nil, f.pos, err
		}
		// The end of what is written (a torn last line is a write not yet
		// finished, or cut short by a crash: read again from its start).
		path := f.seg.path
		_ = f.seg.r.Close()
		f.seg = nil
		if strings.HasSuffix(path, OpenSuffix) {
			if testHookAtEnd != nil {
				testHookAtEnd()
			}
			if !f.sealed(path) {
				return nil, f.pos, io.EOF
			}
			// Sealed since we read to the end: serve may have appended
			// records in between, so read on in the sealed copy from here.
			continue
		}
		f.pos = Position{Segment: f.pos.Segment + 1}
	}
}

// testHookAtEnd runs when a follower has read to the end of the open
// segment, before it asks whether the segment is sealed: tests seal it there.
var testHookAtEnd func()

// sealed reports whether the .open segment at path is no longer being
// written: sealed in events/ or done/, or gone.
func (f *Follower) sealed(path string) bool {
	base := strings.TrimSuffix(filepath.Base(path), OpenSuffix) + SealedSuffix
	for _, p := range []string{filepath.Join(f.d.Events(), base), filepath.Join(f.d.Done(), EventsDir, base)} {
		if _, err := os.Stat(p); err == nil {
			return true
		}
	}
	_, err := os.Stat(path)
	return errors.Is(err, os.ErrNotExist)
}

// Lag is how many bytes of event segments lie ahead of the stored cursor.
// It is safe to call while another goroutine reads (metrics do).
func (f *Follower) Lag() (int64, error) {
	segs, err := f.segments()
	if err != nil {
		return 0, err
	}
	return lagFrom(segs, *f.committed.Load()), nil
}

// lagFrom is how many bytes of segs lie ahead of pos.
func lagFrom(segs []located, pos Position) int64 {
	var n int64
	for _, s := range segs {
		switch {
		case s.first > pos.Segment:
			n += s.size
		case s.first == pos.Segment:
			n += max(0, s.size-pos.Offset)
		}
	}
	return n
}

// OldestCursor returns the smallest segment any follower still needs, and
// false when there are no followers. Flush keeps committed segments from
// there on. A cursor that cannot be read is an error: guessing could let
// flush delete what a follower still needs.
func OldestCursor(d Dir) (int64, bool, error) {
	dir := d.Cursors()
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, err
	}
	oldest, found := int64(0), false
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".json") {
			continue
		}
		p, ok, err := readCursor(filepath.Join(dir, e.Name()))
		if err != nil {
			return 0, false, err
		}
		if ok && (!found || p.Segment < oldest) {
			oldest, found = p.Segment, true
		}
	}
	return oldest, found, nil
}
