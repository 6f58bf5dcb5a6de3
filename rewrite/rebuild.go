package rewrite

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"gocloud.dev/gcerrors"

	"github.com/sgload/sgload/bucket"
	"github.com/sgload/sgload/layout"
	"github.com/sgload/sgload/schema"
)

// RebuildNode names the rebuilt files and manifests in place of a spool's
// node: a leading underscore, which no spool's node id can have.
const RebuildNode = "_rebuild"

// RebuildOptions configure a rebuild.
type RebuildOptions struct {
	// From is the prefix rebuilt; it is read, never changed.
	From       *bucket.Bucket
	FromPrefix string
	// To is the new prefix (in the same or another bucket).
	To       *bucket.Bucket
	ToPrefix string
	Options  // for the outputs: TargetFileBytes, RowGroupRows, WorkDir, Logger, Crash, Now, Version
}

// RebuildSummary is what a rebuild did.
type RebuildSummary struct {
	Partitions int              `json:"partitions"`
	Resumed    int              `json:"partitions_already_rebuilt"`
	Files      int              `json:"files"`
	Rows       int64            `json:"rows"`
	Bytes      int64            `json:"bytes"`
	Errors     int64            `json:"rows_with_errors"`
	Tables     map[string]int64 `json:"tables"`
	Manifests  []string         `json:"manifests"`
	Seconds    float64          `json:"seconds"`
}

// Rebuild re-derives every row of the From prefix from its _raw with this
// release's schema (so a field typed since, or a coercion fixed, reaches
// the whole history) into the To prefix, partition by partition: each
// source partition's rows are mapped again, keeping _sequence,
// _received_at and _node (and _sync_id, _synced_at for objects), written
// as files of the partitions they now belong to, and committed by a
// manifest of kind "rebuild" (node _rebuild, plan: a hash of the source
// partition). A killed rebuild, run again, skips the partitions with a
// manifest and redoes the others, which write the same objects. Memory is
// one row group of reading and one per partition written.
func Rebuild(ctx context.Context, o RebuildOptions) (*RebuildSummary, error) {
	o.Options.Bucket = o.To
	o.Options.defaults()
	sum := &RebuildSummary{Tables: map[string]int64{}, Manifests: []string{}}
	start := o.Now()
	defer func() { sum.Seconds = o.Now().Sub(start).Seconds() }()
	if o.From.URL() == o.To.URL() && o.FromPrefix == o.ToPrefix {
		return sum, errors.New("rebuild writes to a new prefix: --to-prefix (or --to-bucket) must differ from the source")
	}
	cat, err := layout.LoadCatalog(ctx, o.From, o.FromPrefix)
	if err != nil {
		return sum, err
	}
	folders, err := layout.PartitionFiles(ctx, o.From, o.FromPrefix)
	if err != nil {
		return sum, err
	}
	names := slices.Sorted(maps.Keys(folders))
	for i, folder := range names {
		if err := ctx.Err(); err != nil {
			return sum, err
		}
		if o.Progress != nil {
			o.Progress(Progress{Partition: folder, Done: i, Of: len(names), Elapsed: o.Now().Sub(start)})
		}
		kind, table, _, ok := layout.ParseFolder(o.FromPrefix, folder)
		if !ok {
			continue
		}
		var live []layout.Object
		for _, ob := range folders[folder] {
			if cat.Live(ob.Key) {
				live = append(live, ob)
			}
		}
		sort.Slice(live, func(i, j int) bool { return live[i].Key < live[j].Key })
		if len(live) == 0 {
			continue
		}
		sum.Partitions++
		if err := rebuildPartition(ctx, o, folder, kind, table, live, sum); err != nil {
			return sum, fmt.Errorf("rebuild %s: %w", folder, err)
		}
	}
	return sum, nil
}

func rebuildPartition(ctx context.Context, o RebuildOptions, folder string, kind layout.Kind, table string,
	live []layout.Object, sum *RebuildSummary) error {
	rel := strings.TrimPrefix(strings.TrimPrefix(folder, o.FromPrefix), "/")
	h := sha256.Sum256([]byte(rel))
	plan := hex.EncodeToString(h[:8])
	mkey := layout.ManifestKey(o.ToPrefix, RebuildNode, plan)
	if _, err := layout.ReadManifest(ctx, o.To, mkey); err == nil {
		sum.Resumed++
		return nil
	} else if gcerrors.Code(err) != gcerrors.NotFound {
		return err
	}
	src := tableOf(kind, table)
	if src == nil {
		return fmt.Errorf("a table this release does not know")
	}
	dir, err := os.MkdirTemp(o.WorkDir, "sgload-rebuild-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	m := &layout.Manifest{Version: layout.ManifestVersion, Kind: "rebuild", Plan: plan, Node: RebuildNode,
		CreatedAt: o.Now().UTC(), Sgload: o.Version, Segments: []layout.ManifestSegment{}, Tables: map[string]layout.TableStats{}}
	outs := map[layout.Partition]*outputs{}
	var keys []layout.Partition
	out := func(p layout.Partition) *outputs {
		if w := outs[p]; w != nil {
			return w
		}
		pdir := filepath.Join(dir, fmt.Sprintf("p%03d", len(outs)))
		if err := os.Mkdir(pdir, 0o755); err != nil {
			return nil
		}
		w := newOutputs(tableOf(p.Kind, p.Table), pdir, o.TargetFileBytes, o.RowGroupBytes, o.RowGroupRows)
		outs[p] = w
		keys = append(keys, p)
		return w
	}
	rm := newRemapper(kind, table)
	for _, in := range live {
		r, err := openInput(ctx, o.From, in.Key, dir, src)
		if err != nil {
			return err
		}
		b := schema.NewBatch(src)
		for {
			b.Reset()
			n, rerr := r.Read(b, 4096)
			for i := range n {
				m.Events++
				p, row, errs, err := rm.remap(b, i)
				if err != nil {
					r.close()
					return fmt.Errorf("%s row %d: %w", in.Key, i, err)
				}
				if errs > 0 {
					m.RowsWithErrors++
				}
				w := out(p)
				if w == nil {
					r.close()
					return fmt.Errorf("rebuild work folder")
				}
				if err := w.add(row, row.Len()-1); err != nil {
					r.close()
					return err
				}
				row.Reset()
			}
			if errors.Is(rerr, io.EOF) {
				break
			}
			if rerr != nil {
				r.close()
				return fmt.Errorf("read %s: %w", in.Key, rerr)
			}
		}
		r.close()
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i].Less(keys[j]) })
	for _, p := range keys {
		files, err := outs[p].finish()
		if err != nil {
			return err
		}
		for n, f := range files {
			key := layout.ObjectKey(o.ToPrefix, p, RebuildNode, plan, n)
			if err := upload(ctx, o.Options, key, f); err != nil {
				return err
			}
			lf := layout.File{Key: key, Kind: p.Kind.Dir(), Table: p.Table, Date: p.Date(), Rows: f.rows, Bytes: f.bytes,
				MD5: f.md5, MinSequence: f.minSeq, MaxSequence: f.maxSeq}
			m.Files = append(m.Files, lf)
			st := m.Tables[p.Table]
			st.Rows += f.rows
			st.Files++
			st.Bytes += f.bytes
			m.Tables[p.Table] = st
			m.Rows += f.rows
			sum.Files++
			sum.Bytes += f.bytes
			sum.Tables[p.Table] += f.rows
		}
	}
	if err := o.Crash(StepOutputsUploaded); err != nil {
		return err
	}
	if err := layout.WriteManifest(ctx, o.To, mkey, m); err != nil {
		return err
	}
	sum.Rows += m.Rows
	sum.Errors += m.RowsWithErrors
	sum.Manifests = append(sum.Manifests, mkey)
	return o.Crash(StepCommitted)
}

// remapper maps a stored row again from its _raw with the current schema.
type remapper struct {
	kind       layout.Kind
	table      string
	events     *schema.EventMapper
	objects    *schema.ObjectMapper
	batches    map[string]*schema.Batch
	raw, seq   int
	recv, node int
	source     int
	syncID, at int
}

func newRemapper(kind layout.Kind, table string) *remapper {
	t := tableOf(kind, table)
	rm := &remapper{kind: kind, table: table, batches: map[string]*schema.Batch{},
		raw: t.MustIndex("_raw"), seq: t.MustIndex("_sequence"), node: t.MustIndex("_node")}
	if kind == layout.Events {
		rm.events = schema.NewEventMapper()
		rm.recv, rm.source = t.MustIndex("_received_at"), t.MustIndex("_source")
	} else {
		c := schema.Collections[table]
		if table == schema.Snapshots.Name {
			c = schema.Snapshots
		}
		rm.objects = schema.NewObjectMapper(c)
		rm.syncID, rm.at = t.MustIndex("_sync_id"), t.MustIndex("_synced_at")
	}
	return rm
}

// remap returns the partition row r of b now belongs to and a batch whose
// last row is it.
func (rm *remapper) remap(b *schema.Batch, r int) (layout.Partition, *schema.Batch, int, error) {
	raw := b.Column(rm.raw).StringAt(r)
	seq := b.Column(rm.seq).Ints[r]
	node := string(b.Column(rm.node).StringAt(r))
	if rm.kind == layout.Objects {
		at := b.Column(rm.at).Ints[r]
		out := rm.batch(layout.Objects, rm.table)
		errs, err := rm.objects.Append(out, raw, schema.ObjectMeta{Sequence: seq, SyncID: string(b.Column(rm.syncID).StringAt(r)),
			SyncedAt: at, Node: node})
		return layout.Partition{Kind: layout.Objects, Table: rm.table, Day: layout.Day(at)}, out, len(errs), err
	}
	recv := b.Column(rm.recv).Ints[r]
	e, err := rm.events.Parse(raw)
	if err != nil {
		return layout.Partition{}, nil, 0, err
	}
	day := e.Time
	if day <= 0 {
		day = recv
	}
	out := rm.batch(layout.Events, e.Table)
	rm.events.Append(out, e, schema.Meta{Sequence: seq, ReceivedAt: recv, Node: node,
		Source: string(b.Column(rm.source).StringAt(r))})
	return layout.Partition{Kind: layout.Events, Table: e.Table, Day: layout.Day(day)}, out, len(e.Errors()), nil
}

func (rm *remapper) batch(kind layout.Kind, table string) *schema.Batch {
	b := rm.batches[table]
	if b == nil {
		b = schema.NewBatch(tableOf(kind, table))
		rm.batches[table] = b
	}
	return b
}
