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

// Layout knows where things live under a spool root.
type Layout struct{ Root string }

func (l Layout) Events() string          { return filepath.Join(l.Root, EventsDir) }
func (l Layout) Quarantine() string      { return filepath.Join(l.Root, QuarantineDir) }
func (l Layout) Done() string            { return filepath.Join(l.Root, DoneDir) }
func (l Layout) State() string           { return filepath.Join(l.Root, StateDir) }
func (l Layout) Objects(c string) string { return filepath.Join(l.Root, ObjectsDir, c) }

// Create makes the folders of a spool, durably.
func (l Layout) Create() error {
	for _, d := range []string{l.Events(), filepath.Join(l.Root, ObjectsDir), l.Quarantine(), l.Done(), l.State()} {
		if err := durable.MkdirAll(d, 0o755); err != nil {
			return fmt.Errorf("create spool %s: %w", l.Root, err)
		}
	}
	return nil
}

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

// WalkDone calls fn for every sealed segment under done/ (events and each
// object collection), with its path and its path relative to done/ (how
// manifests name it). A spool with no done/ yet has none.
func WalkDone(l Layout, fn func(path, rel string, d os.DirEntry) error) error {
	return filepath.WalkDir(l.Done(), func(p string, d os.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				return nil
			}
			return err
		}
		if d.IsDir() || !strings.HasSuffix(p, SealedSuffix) {
			return nil
		}
		rel, err := filepath.Rel(l.Done(), p)
		if err != nil {
			return err
		}
		return fn(p, rel, d)
	})
}
