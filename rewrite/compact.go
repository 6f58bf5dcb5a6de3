package rewrite

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"gocloud.dev/blob"
	"gocloud.dev/gcerrors"

	"github.com/sgload/sgload/layout"
	"github.com/sgload/sgload/parquetfile"
	"github.com/sgload/sgload/schema"
)

// rewriter is one run over a destination.
type rewriter struct {
	o     Options
	cat   *layout.Catalog
	sum   *Summary
	start time.Time
}

// Compact finishes rewrites whose grace has passed, retires partitions past
// RetainDays, and compacts every partition holding two or more committed
// files below TargetFileBytes that are older than MinAge.
func Compact(ctx context.Context, o Options) (*Summary, error) {
	o.defaults()
	rw := &rewriter{o: o, sum: &Summary{Rewrites: []string{}}, start: o.Now()}
	defer func() { rw.sum.Seconds = o.Now().Sub(rw.start).Seconds() }()
	var err error
	if rw.cat, err = layout.LoadCatalog(ctx, o.Bucket, o.Prefix); err != nil {
		return rw.sum, err
	}
	if err := rw.finishRewrites(ctx); err != nil {
		return rw.sum, err
	}
	folders, err := layout.PartitionFiles(ctx, o.Bucket, o.Prefix)
	if err != nil {
		return rw.sum, err
	}
	names := slices.Sorted(maps.Keys(folders))
	retainBefore := ""
	if o.RetainDays > 0 {
		retainBefore = o.Now().UTC().AddDate(0, 0, -o.RetainDays).Format("2006-01-02")
	}
	for i, folder := range names {
		if err := ctx.Err(); err != nil {
			return rw.sum, err
		}
		if o.Progress != nil {
			o.Progress(Progress{Partition: folder, Done: i, Of: len(names), Elapsed: o.Now().Sub(rw.start)})
		}
		kind, table, date, ok := layout.ParseFolder(o.Prefix, folder)
		if !ok {
			continue
		}
		live := rw.live(folders[folder])
		var jb *job
		switch {
		case kind == layout.Events && retainBefore != "" && date < retainBefore:
			jb = &job{kind: layout.Retain, folder: folder, inputs: live}
		default:
			jb = rw.compaction(folder, live)
		}
		if jb == nil || len(jb.inputs) == 0 {
			continue
		}
		jb.table = tableOf(kind, table)
		jb.date = date
		if err := rw.do(ctx, jb); err != nil {
			if errors.Is(err, layout.ErrLeased) {
				rw.sum.Leased++
				o.Logger.Info("partition leased by another process; left for the next run", "partition", folder, "err", err)
				continue
			}
			return rw.sum, err
		}
	}
	return rw.sum, nil
}

func tableOf(kind layout.Kind, table string) *schema.Table {
	if kind == layout.Events {
		return schema.EventTable(table)
	}
	if table == schema.Snapshots.Name {
		return schema.Snapshots.Table()
	}
	if c := schema.Collections[table]; c != nil {
		return c.Table()
	}
	return nil
}

// live keeps the committed files no rewrite has replaced.
func (rw *rewriter) live(objs []layout.Object) []layout.Object {
	var out []layout.Object
	for _, ob := range objs {
		if rw.cat.Live(ob.Key) {
			out = append(out, ob)
		}
	}
	return out
}

// compaction is the compaction of folder, if it needs one: its live files
// below the target size and older than MinAge, when there are two or more.
func (rw *rewriter) compaction(folder string, live []layout.Object) *job {
	var small []layout.Object
	cutoff := rw.o.Now().Add(-rw.o.MinAge)
	for _, ob := range live {
		if ob.Size < rw.o.TargetFileBytes && !ob.ModTime.After(cutoff) {
			small = append(small, ob)
		}
	}
	if len(small) < 2 {
		return nil
	}
	return &job{kind: layout.Compact, folder: folder, inputs: small}
}

// job is one partition's rewrite.
type job struct {
	kind   string
	folder string
	table  *schema.Table
	date   string
	inputs []layout.Object
	// drop, for forget, says whether a row goes.
	drop func(b *schema.Batch, row int) bool
}

// rewritten is a committed rewrite.
type rewritten struct {
	key string
	m   *layout.Rewrite
}

// do runs the protocol for one partition.
func (rw *rewriter) do(ctx context.Context, j *job) error {
	o := rw.o
	if j.table == nil {
		o.Logger.Warn("partition of a table this release does not know; left alone", "partition", j.folder)
		return nil
	}
	lease, err := layout.AcquireLease(ctx, o.Bucket, o.Prefix, layout.LeaseName(o.Prefix, j.folder), o.Holder, o.LeaseTTL, o.Now())
	if err != nil {
		return err
	}
	defer func() { _ = lease.Release(context.WithoutCancel(ctx)) }()
	if err := o.Crash(StepLeased); err != nil {
		return err
	}
	// What another process committed since the catalog was read: its
	// inputs are no longer ours to take.
	if err := rw.cat.Refresh(ctx, o.Bucket); err != nil {
		return err
	}
	j.inputs = rw.live(j.inputs)
	if err := rw.deleteOrphans(ctx, j.folder); err != nil {
		return err
	}
	if len(j.inputs) == 0 || (j.kind == layout.Compact && len(j.inputs) < 2) {
		return nil
	}
	id := layout.NewRewriteID(o.Now())
	m := &layout.Rewrite{Version: layout.RewriteVersion, Kind: j.kind, ID: id, CreatedAt: o.Now().UTC(), Sgload: o.Version,
		Partition: j.folder, Table: j.table.Name, Date: j.date, Outputs: []layout.File{}}
	if j.kind != layout.Retain {
		if err := rw.merge(ctx, j, m, lease); err != nil {
			return err
		}
	} else {
		for _, in := range j.inputs {
			m.Inputs = append(m.Inputs, layout.Input{Key: in.Key, Bytes: in.Size})
		}
	}
	if j.kind == layout.Retain && len(m.Inputs) > 0 {
		// Retired rows are rows removed on purpose; the files' row counts
		// come from their footers.
		for i := range m.Inputs {
			n, err := footerRows(ctx, rw, m.Inputs[i].Key)
			if err != nil {
				return err
			}
			m.Inputs[i].Rows = n
			m.RowsIn += n
		}
		m.Removed = m.RowsIn
	}
	if err := o.Crash(StepOutputsUploaded); err != nil {
		return err
	}
	grace := o.Grace
	if j.kind == layout.Forget {
		grace = 0
	}
	m.DeleteAfter = o.Now().Add(grace).UTC()
	// The lease must still be ours at the commit: renewing fails if
	// another process took it over after it expired.
	if err := lease.Renew(ctx, o.Now()); err != nil {
		return err
	}
	key := layout.RewriteKey(o.Prefix, id)
	if err := layout.WriteRewrite(ctx, o.Bucket, key, m); err != nil {
		return err
	}
	rw.cat.Add(m)
	if err := o.Crash(StepCommitted); err != nil {
		return err
	}
	o.Logger.Info("partition rewritten", "kind", j.kind, "partition", j.folder, "files_in", len(m.Inputs),
		"files_out", len(m.Outputs), "rows_in", m.RowsIn, "rows_out", m.RowsOut, "duplicates", m.Duplicates, "removed", m.Removed)
	rw.sum.add(&rewritten{key: key, m: m})
	if j.kind == layout.Retain {
		rw.sum.Retired++
		rw.sum.Partitions--
	}
	if grace == 0 {
		return rw.finish(ctx, m)
	}
	return nil
}

// merge reads the inputs into the sort, writes the outputs and uploads
// them, filling m.
func (rw *rewriter) merge(ctx context.Context, j *job, m *layout.Rewrite, lease *layout.Lease) error {
	o := rw.o
	dir, err := os.MkdirTemp(o.WorkDir, "sgload-rewrite-")
	if err != nil {
		return fmt.Errorf("rewrite work folder: %w", err)
	}
	defer os.RemoveAll(dir)
	s := newSorter(j.table, dir, o.MemoryBytes)
	for _, in := range j.inputs {
		r, err := openInput(ctx, o.Bucket, in.Key, dir, j.table)
		if err != nil {
			return err
		}
		m.Inputs = append(m.Inputs, layout.Input{Key: in.Key, Rows: r.NumRows(), Bytes: r.Size})
		m.RowsIn += r.NumRows()
		err = s.addFrom(r.Reader)
		r.close()
		if err != nil {
			return fmt.Errorf("read %s: %w", in.Key, err)
		}
		// A long read must not let the lease lapse.
		if err := lease.RenewIfDue(ctx, o.Now()); err != nil {
			return err
		}
	}
	out := newOutputs(j.table, dir, o.TargetFileBytes, o.RowGroupBytes, o.RowGroupRows)
	keep := rw.keeper(j, m)
	err = s.emit(func(b *schema.Batch, row int) error {
		if !keep(b, row) {
			return nil
		}
		return out.add(b, row)
	})
	if err != nil {
		return err
	}
	files, err := out.finish()
	if err != nil {
		return err
	}
	for n, f := range files {
		key := layout.RewriteObjectKey(j.folder, m.ID, n)
		if err := upload(ctx, o, key, f); err != nil {
			return err
		}
		m.Outputs = append(m.Outputs, layout.File{Key: key, Kind: kindName(j.folder, o.Prefix), Table: j.table.Name, Date: j.date,
			Rows: f.rows, Bytes: f.bytes, MD5: f.md5, MinSequence: f.minSeq, MaxSequence: f.maxSeq})
		m.RowsOut += f.rows
	}
	return nil
}

func kindName(folder, prefix string) string {
	kind, _, _, _ := layout.ParseFolder(prefix, folder)
	return kind.Dir()
}

// keeper decides which rows of the sorted stream the outputs keep: in event
// partitions, the first row (earliest _sequence) of each dedupe key among
// the rows of one timestamp (duplicates share theirs); for forget, none of
// the rows the job drops.
func (rw *rewriter) keeper(j *job, m *layout.Rewrite) func(b *schema.Batch, row int) bool {
	ts := j.table.Index("timestamp")
	id, fp := j.table.Index("sg_event_id"), j.table.Index("_fingerprint")
	event := ts >= 0 && id >= 0 && fp >= 0
	var curValid bool
	var cur int64
	seen := map[string]struct{}{}
	var key []byte
	return func(b *schema.Batch, row int) bool {
		if j.drop != nil && j.drop(b, row) {
			m.Removed++
			return false
		}
		if !event {
			return true
		}
		c := b.Column(ts)
		if c.Valid[row] != curValid || (curValid && c.Ints[row] != cur) {
			clear(seen)
			curValid, cur = c.Valid[row], c.Ints[row]
		}
		key = schema.RowKey(key[:0], b.Column(id).StringAt(row), b.Column(fp).StringAt(row))
		if _, dup := seen[string(key)]; dup {
			m.Duplicates++
			return false
		}
		seen[string(key)] = struct{}{}
		return true
	}
}

func upload(ctx context.Context, o Options, key string, f outFile) error {
	r, err := os.Open(f.path)
	if err != nil {
		return err
	}
	defer r.Close()
	if err := o.Bucket.Upload(ctx, key, r, &blob.WriterOptions{ContentType: "application/vnd.apache.parquet", ContentMD5: f.md5}); err != nil {
		return fmt.Errorf("upload %s: %w", key, err)
	}
	return nil
}

// footerRows reads a file's row count from its footer.
func footerRows(ctx context.Context, rw *rewriter, key string) (int64, error) {
	dir, err := os.MkdirTemp(rw.o.WorkDir, "sgload-footer-")
	if err != nil {
		return 0, err
	}
	defer os.RemoveAll(dir)
	local := filepath.Join(dir, "f.parquet")
	size, err := rw.o.Bucket.Download(ctx, key, local)
	if err != nil {
		return 0, err
	}
	f, err := os.Open(local)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	r, err := parquetfile.OpenReader(f, size, schema.EventTable("x"))
	if err != nil {
		return 0, fmt.Errorf("%s: %w", key, err)
	}
	return r.NumRows(), nil
}

// deleteOrphans deletes the outputs of rewrites of folder that never
// committed (a process killed before its manifest): under the lease, no
// other process can be writing any.
func (rw *rewriter) deleteOrphans(ctx context.Context, folder string) error {
	it := rw.o.Bucket.List(&blob.ListOptions{Prefix: folder + "/"})
	for {
		obj, err := it.Next(ctx)
		if err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return fmt.Errorf("list %s: %w", folder, err)
		}
		owner, ok := layout.FileOwner(obj.Key)
		if !ok || !strings.HasPrefix(owner, "rw/") || rw.cat.Committed(obj.Key) {
			continue
		}
		if err := rw.o.Bucket.Delete(ctx, obj.Key); err != nil && gcerrors.Code(err) != gcerrors.NotFound {
			return fmt.Errorf("delete uncommitted rewrite output %s: %w", obj.Key, err)
		}
		rw.sum.Orphans++
		rw.o.Logger.Info("deleted the output of a rewrite that never committed", "key", obj.Key)
	}
}

// finishRewrites deletes the inputs of committed rewrites whose grace has
// passed and moves their manifests to done/.
func (rw *rewriter) finishRewrites(ctx context.Context) error {
	now := rw.o.Now()
	for _, m := range append([]*layout.Rewrite(nil), rw.cat.Active...) {
		if now.Before(m.DeleteAfter) {
			continue
		}
		if err := rw.finish(ctx, m); err != nil {
			return err
		}
	}
	return nil
}

// finish deletes m's inputs and moves its manifest to done/; every step is
// idempotent, so a kill anywhere is finished by the next run.
func (rw *rewriter) finish(ctx context.Context, m *layout.Rewrite) error {
	o := rw.o
	for _, in := range m.Inputs {
		if err := o.Bucket.Delete(ctx, in.Key); err != nil && gcerrors.Code(err) != gcerrors.NotFound {
			return fmt.Errorf("delete replaced %s: %w", in.Key, err)
		}
		rw.sum.InputsDeleted++
	}
	if err := o.Crash(StepInputsDeleted); err != nil {
		return err
	}
	if err := layout.WriteRewrite(ctx, o.Bucket, layout.RewriteDoneKey(o.Prefix, m.ID), m); err != nil {
		return err
	}
	if err := o.Bucket.Delete(ctx, layout.RewriteKey(o.Prefix, m.ID)); err != nil && gcerrors.Code(err) != gcerrors.NotFound {
		return fmt.Errorf("finish rewrite %s: %w", m.ID, err)
	}
	rw.cat.Finished(m)
	return o.Crash(StepFinished)
}
