package layout

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"gocloud.dev/blob"

	"github.com/sgload/sgload/bucket"
	"github.com/sgload/sgload/schema"
)

// ManifestVersion is written in every manifest.
const ManifestVersion = 1

// Manifest is the commit record of one plan, written to the bucket last.
type Manifest struct {
	Version int `json:"version"`
	// Kind is "" for a flush, "replay" for a replay of committed segments,
	// "rebuild" for a rebuild from another prefix's _raw.
	Kind       string                `json:"kind,omitempty"`
	Plan       string                `json:"plan"`
	Node       string                `json:"node"`
	CreatedAt  time.Time             `json:"created_at"`
	Sgload     string                `json:"sgload_version"`
	Segments   []ManifestSegment     `json:"segments"`
	Files      []File                `json:"files"`
	Tables     map[string]TableStats `json:"tables"`
	Events     int64                 `json:"events"`
	Rows       int64                 `json:"rows"`
	Duplicates Duplicates            `json:"duplicates"`
	// RowsWithErrors counts rows whose _errors is not empty.
	RowsWithErrors int64 `json:"rows_with_errors"`
	// QuarantinedEvents counts events that became no row because they could
	// not be read; QuarantinedLines counts damaged spool lines. Both are in
	// the spool's quarantine folder. Events = Rows + Duplicates +
	// QuarantinedEvents + Skipped always holds.
	QuarantinedEvents int64 `json:"quarantined_events"`
	// Skipped counts events a replay's filter left out on purpose.
	Skipped          int64 `json:"skipped,omitempty"`
	QuarantinedLines int64 `json:"quarantined_lines"`
	MinSequence      int64 `json:"min_sequence"`
	MaxSequence      int64 `json:"max_sequence"`
}

// ManifestSegment is a segment the plan consumed.
type ManifestSegment struct {
	Path    string `json:"path"`
	Bytes   int64  `json:"bytes"`
	Records int64  `json:"records"`
	Events  int64  `json:"events"`
}

// File is one Parquet object.
type File struct {
	Key string `json:"key"`
	// Kind is "events" or "objects".
	Kind        string `json:"kind"`
	Table       string `json:"table"`
	Date        string `json:"dt"`
	Rows        int64  `json:"rows"`
	Bytes       int64  `json:"bytes"`
	MD5         []byte `json:"md5"`
	MinSequence int64  `json:"min_sequence"`
	MaxSequence int64  `json:"max_sequence"`
}

// TableStats sums a table's files.
type TableStats struct {
	Rows  int64 `json:"rows"`
	Files int   `json:"files"`
	Bytes int64 `json:"bytes"`
}

// Duplicates counts events dropped as duplicates.
type Duplicates struct {
	InPlan    int64 `json:"in_plan"`
	InHistory int64 `json:"in_history"`
}

// Total is all duplicates dropped.
func (d Duplicates) Total() int64 { return d.InPlan + d.InHistory }

// ErrTornManifest: the manifest exists but is not a whole manifest (empty,
// cut short, or not sgload's). A power cut on a store that does not write
// atomically can leave one; it commits nothing.
var ErrTornManifest = errors.New("manifest is empty or torn")

// ReadManifest reads the manifest at key. A manifest that is there but not
// whole is ErrTornManifest.
func ReadManifest(ctx context.Context, b *bucket.Bucket, key string) (*Manifest, error) {
	data, err := b.ReadAll(ctx, key)
	if err != nil {
		return nil, err
	}
	var m Manifest
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, fmt.Errorf("manifest %s: %w (%d bytes: %v)", key, ErrTornManifest, len(data), err)
	}
	// Every plan but a rebuild's consumed segments; a rebuild reads the
	// bucket, not the spool.
	if m.Version < 1 || m.Plan == "" || m.Node == "" || (len(m.Segments) == 0 && m.Kind != "rebuild") {
		return nil, fmt.Errorf("manifest %s: %w (%d bytes, no plan, node or segments)", key, ErrTornManifest, len(data))
	}
	return &m, nil
}

// ListManifests returns every manifest key under prefix, for all nodes.
func ListManifests(ctx context.Context, b *bucket.Bucket, prefix string) ([]string, error) {
	var keys []string
	it := b.List(&blob.ListOptions{Prefix: Join(prefix, ManifestsDir) + "/"})
	for {
		obj, err := it.Next(ctx)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("list manifests: %w", err)
		}
		if strings.HasSuffix(obj.Key, ".json") {
			keys = append(keys, obj.Key)
		}
	}
	sort.Strings(keys)
	return keys, nil
}

// HasManifests reports whether node has committed anything under prefix.
func HasManifests(ctx context.Context, b *bucket.Bucket, prefix, node string) (bool, error) {
	page, _, err := b.ListPage(ctx, blob.FirstPageToken, 1, &blob.ListOptions{Prefix: Join(prefix, ManifestsDir, node) + "/"})
	if err != nil {
		return false, fmt.Errorf("list manifests: %w", err)
	}
	return len(page) > 0, nil
}

// EventTypes lists the event tables present under prefix (the
// event_type=<table> folders), so new types get views too.
func EventTypes(ctx context.Context, b *bucket.Bucket, prefix string) ([]string, error) {
	dirs, err := subdirs(ctx, b, Join(prefix, EventsDir))
	if err != nil {
		return nil, fmt.Errorf("list event tables: %w", err)
	}
	var types []string
	for _, d := range dirs {
		if t, ok := strings.CutPrefix(d, PartitionKey+"="); ok {
			types = append(types, t)
		}
	}
	return types, nil
}

// ObjectCollections lists the object collections present under prefix.
func ObjectCollections(ctx context.Context, b *bucket.Bucket, prefix string) ([]string, error) {
	dirs, err := subdirs(ctx, b, Join(prefix, ObjectsDir))
	if err != nil {
		return nil, fmt.Errorf("list object collections: %w", err)
	}
	colls := []string{}
	for _, d := range dirs {
		if d != schema.Snapshots.Name {
			colls = append(colls, d)
		}
	}
	return colls, nil
}

// subdirs lists the names of the folders directly under dir.
func subdirs(ctx context.Context, b *bucket.Bucket, dir string) ([]string, error) {
	base := dir + "/"
	var names []string
	it := b.List(&blob.ListOptions{Prefix: base, Delimiter: "/"})
	for {
		obj, err := it.Next(ctx)
		if errors.Is(err, io.EOF) {
			return names, nil
		}
		if err != nil {
			return nil, err
		}
		if obj.IsDir {
			names = append(names, strings.TrimSuffix(strings.TrimPrefix(obj.Key, base), "/"))
		}
	}
}

// WriteManifest writes m at key: the commit point of a plan.
func WriteManifest(ctx context.Context, b *bucket.Bucket, key string, m *Manifest) error {
	data, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	if err := b.WriteAll(ctx, key, append(data, '\n'), &blob.WriterOptions{ContentType: "application/json"}); err != nil {
		return fmt.Errorf("write manifest %s: %w", key, err)
	}
	return nil
}
