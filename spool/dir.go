package spool

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/sgload/sgload/internal/durable"
)

// Folder names under the spool root.
const (
	EventsDir     = "events"
	ObjectsDir    = "objects"
	QuarantineDir = "quarantine"
	DoneDir       = "done"
	StateDir      = "state"
)

// File suffixes of segments.
const (
	OpenSuffix   = ".open"
	SealedSuffix = ".ndjson"
)

// Errors callers branch on.
var (
	// ErrNoSpool: the folder named as a spool does not exist.
	ErrNoSpool = errors.New("no spool folder")
	// ErrBusy: another process holds the lock asked for.
	ErrBusy = errors.New("another sgload process holds this spool's lock")
)

// Dir is a spool folder. It answers every question about where things live
// under it and owns each step of a segment's life:
//
//	sealed (events/ or objects/<collection>/, listed by Sealed)
//	  -> taken by a flush plan (journaled under FlushJournal; still in place)
//	  -> done (Commit moves it to done/, once the plan's manifest is written)
//	  -> pruned (Prune deletes it past retention, once every follower passed it)
type Dir struct{ Root string }

// Open returns the spool folder at root, which must exist: commands that
// read a spool (flush, verify, forward) never create one by mistake.
func Open(root string) (Dir, error) {
	st, err := os.Stat(root)
	if err != nil || !st.IsDir() {
		return Dir{}, fmt.Errorf("%w: %s", ErrNoSpool, root)
	}
	return Dir{Root: root}, nil
}

// Create returns the spool folder at root, making its folders (durably) as
// needed: serve and sync start a spool.
func Create(root string) (Dir, error) {
	d := Dir{Root: root}
	for _, p := range []string{d.Events(), filepath.Join(root, ObjectsDir), d.Quarantine(), d.Done(), d.State()} {
		if err := durable.MkdirAll(p, 0o755); err != nil {
			return Dir{}, fmt.Errorf("create spool %s: %w", root, err)
		}
	}
	return d, nil
}

// Paths under the spool.
func (d Dir) Events() string          { return filepath.Join(d.Root, EventsDir) }
func (d Dir) Objects(c string) string { return filepath.Join(d.Root, ObjectsDir, c) }
func (d Dir) Quarantine() string      { return filepath.Join(d.Root, QuarantineDir) }
func (d Dir) Done() string            { return filepath.Join(d.Root, DoneDir) }
func (d Dir) State() string           { return filepath.Join(d.Root, StateDir) }

// State files and folders, each owned by one command:
//
//	node           the node id (serve)
//	sequence       serve's _sequence high-water mark
//	sync-sequence  sync's _sequence high-water mark
//	<name>.lock    one per command that must run alone (Lock)
//	flush/         flush plans in flight: plan, intents, work folder
//	dedupe/<dest>/ each destination's dedupe history
//	sync/          each collection's sync cursor
//	cursors/       each follower's position (forward, tees)
//	forget/        the audit record of each erasure (no address in it)
//	incoming/      serve's spilled request bodies (unlinked while in use)
func (d Dir) NodeFile() string         { return filepath.Join(d.State(), "node") }
func (d Dir) SequenceFile() string     { return filepath.Join(d.State(), "sequence") }
func (d Dir) SyncSequenceFile() string { return filepath.Join(d.State(), "sync-sequence") }
func (d Dir) FlushJournal() string     { return filepath.Join(d.State(), "flush") }
func (d Dir) DedupeHistory() string    { return filepath.Join(d.State(), "dedupe") }
func (d Dir) SyncCursors() string      { return filepath.Join(d.State(), "sync") }
func (d Dir) Cursors() string          { return filepath.Join(d.State(), "cursors") }
func (d Dir) Audits() string           { return filepath.Join(d.State(), "forget") }

// Incoming is where serve keeps request bodies that are too large to wait
// in memory for their signature check (unlinked files: a crash leaves
// nothing behind, but a folder of its own keeps them off the spool's disk
// accounting elsewhere).
func (d Dir) Incoming() string { return filepath.Join(d.State(), "incoming") }

// Rel is path relative to the spool root, with forward slashes: how plans
// and manifests name segments.
func (d Dir) Rel(path string) string {
	rel, err := filepath.Rel(d.Root, path)
	if err != nil {
		return path
	}
	return filepath.ToSlash(rel)
}

// Path is the file a relative name (Rel) stands for.
func (d Dir) Path(rel string) string { return filepath.Join(d.Root, filepath.FromSlash(rel)) }

var nodeRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_.-]{0,62}$`)

// ValidNode reports whether s can be a node id: it appears in file and
// object names, so it is kept to lower-case letters, digits, '.', '_' and '-'.
func ValidNode(s string) bool { return nodeRE.MatchString(s) }

// SegmentName is the file name of a segment: the node, then the first
// sequence as 16 hex digits so that name order is sequence order.
func SegmentName(node string, firstSeq int64, suffix string) string {
	return fmt.Sprintf("%s-%016x%s", node, firstSeq, suffix)
}

// Segment is a segment file.
type Segment struct {
	Path     string
	Node     string
	FirstSeq int64
	Size     int64
}

// Name is the file name without its folder.
func (s Segment) Name() string { return filepath.Base(s.Path) }

// ParseSegmentName splits a segment file name into node and first sequence.
func ParseSegmentName(name string) (node string, firstSeq int64, ok bool) {
	base := strings.TrimSuffix(strings.TrimSuffix(name, SealedSuffix), OpenSuffix)
	if base == name || len(base) < 18 || base[len(base)-17] != '-' {
		return "", 0, false
	}
	seq, err := strconv.ParseInt(base[len(base)-16:], 16, 64)
	if err != nil || !ValidNode(base[:len(base)-17]) {
		return "", 0, false
	}
	return base[:len(base)-17], seq, true
}

// ListSegments returns the segments in dir with the given suffix, in
// sequence order. A missing folder holds no segments.
func ListSegments(dir, suffix string) ([]Segment, error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list segments in %s: %w", dir, err)
	}
	var segs []Segment
	for _, e := range entries {
		if e.IsDir() || !strings.HasSuffix(e.Name(), suffix) {
			continue
		}
		node, seq, ok := ParseSegmentName(e.Name())
		if !ok {
			continue
		}
		info, err := e.Info()
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				continue // moved away by a concurrent flush
			}
			return nil, fmt.Errorf("stat %s: %w", e.Name(), err)
		}
		segs = append(segs, Segment{Path: filepath.Join(dir, e.Name()), Node: node, FirstSeq: seq, Size: info.Size()})
	}
	sort.Slice(segs, func(i, j int) bool {
		if segs[i].FirstSeq != segs[j].FirstSeq {
			return segs[i].FirstSeq < segs[j].FirstSeq
		}
		return segs[i].Node < segs[j].Node
	})
	return segs, nil
}

// Sealed lists every sealed segment waiting for flush, event segments and
// object snapshots, oldest sequence first.
func (d Dir) Sealed() ([]Segment, error) {
	segs, err := ListSegments(d.Events(), SealedSuffix)
	if err != nil {
		return nil, err
	}
	objs, err := d.objectSegments()
	if err != nil {
		return nil, err
	}
	segs = append(segs, objs...)
	sort.SliceStable(segs, func(i, j int) bool {
		if segs[i].FirstSeq != segs[j].FirstSeq {
			return segs[i].FirstSeq < segs[j].FirstSeq
		}
		return segs[i].Path < segs[j].Path
	})
	return segs, nil
}

// Backlog sums the sealed segments waiting for flush.
func (d Dir) Backlog() (segments int, bytes int64, err error) {
	segs, err := d.Sealed()
	for _, s := range segs {
		bytes += s.Size
	}
	return len(segs), bytes, err
}

// objectSegments returns the sealed segments of every collection.
func (d Dir) objectSegments() ([]Segment, error) {
	dirs, err := os.ReadDir(filepath.Join(d.Root, ObjectsDir))
	if err != nil {
		if os.IsNotExist(err) {
			return nil, nil
		}
		return nil, err
	}
	var out []Segment
	for _, e := range dirs {
		if !e.IsDir() {
			continue
		}
		segs, err := ListSegments(d.Objects(e.Name()), SealedSuffix)
		if err != nil {
			return nil, err
		}
		out = append(out, segs...)
	}
	return out, nil
}

// ObjectCollection returns the collection of a segment path relative to the
// spool root (objects/<collection>/...), or "" for event segments.
func ObjectCollection(rel string) string {
	parts := strings.Split(filepath.ToSlash(rel), "/")
	if len(parts) >= 3 && parts[0] == ObjectsDir {
		return parts[1]
	}
	return ""
}

// Commit moves the sealed segment rel (relative to the root) to done/ once
// the bucket holds it, stamping it with now for Prune. It is idempotent: a
// segment already moved is left alone.
func (d Dir) Commit(rel string, now time.Time) error {
	src, dst := d.Path(rel), filepath.Join(d.Done(), filepath.FromSlash(rel))
	if _, err := os.Stat(src); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err := durable.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	// The mtime records when the segment was committed, for Prune; a
	// segment that keeps its old time is only pruned sooner.
	_ = os.Chtimes(src, now, now)
	if err := durable.Rename(src, dst); err != nil {
		return fmt.Errorf("move committed segment %s to done: %w", rel, err)
	}
	return nil
}

// Prune deletes committed segments (done/) committed before cutoff, except
// event segments a follower (forward, a raw tee) has not passed yet.
func (d Dir) Prune(cutoff time.Time) (int, error) {
	keepFrom, following, err := OldestCursor(d)
	if err != nil {
		return 0, err
	}
	n := 0
	err = d.WalkDone(func(p, _ string, e os.DirEntry) error {
		inEvents := filepath.Dir(p) == filepath.Join(d.Done(), EventsDir)
		if _, first, ok := ParseSegmentName(e.Name()); ok && following && inEvents && first >= keepFrom {
			return nil // a follower still needs it
		}
		info, err := e.Info()
		if err == nil && info.ModTime().Before(cutoff) {
			if err := os.Remove(p); err != nil {
				return err
			}
			n++
		}
		return nil
	})
	return n, err
}

// WalkDone calls fn for every committed segment under done/ (events and each
// object collection), with its path and its path relative to done/ (how
// manifests name it). A spool with no done/ yet has none.
func (d Dir) WalkDone(fn func(path, rel string, e os.DirEntry) error) error {
	return filepath.WalkDir(d.Done(), func(p string, e os.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				return nil
			}
			return err
		}
		if e.IsDir() || !strings.HasSuffix(p, SealedSuffix) {
			return nil
		}
		rel, err := filepath.Rel(d.Done(), p)
		if err != nil {
			return err
		}
		return fn(p, filepath.ToSlash(rel), e)
	})
}
