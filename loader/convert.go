package loader

import (
	"bufio"
	"context"
	"crypto/md5"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"golang.org/x/sync/errgroup"

	"github.com/sgload/sgload/layout"
	"github.com/sgload/sgload/parquetfile"
	"github.com/sgload/sgload/schema"
	"github.com/sgload/sgload/spool"
)

// Pass 2 of a plan, the conversion:
//
//	spills (pass 1) --partition--> writer goroutine: merge the runs, map, encode --file--> upload
//
// Each goroutine takes the largest partition left and writes it whole: its
// rows, merged from pass 1's sorted runs in email order (spill.go), mapped
// into a small batch that is encoded into the open row group (pages are
// compressed as they fill, so a row group costs its compressed size in
// memory, not its rows); a row group
// ends at RowGroupRows or RowGroupBytes of rows, a file once it reaches
// TargetFileBytes. What goes where depends on the data and the tuning flags,
// never on timing, so output is reproducible; exactly-once rests on the
// journal, not on that (undo deletes a failed attempt's objects first).

// writeBatchRows is how many rows are mapped before they are encoded: enough
// to amortise the call, few enough to stay in the CPU's caches.
const writeBatchRows = 2048

// tables caches each partition's table (a collection's is built on demand).
var tables sync.Map // layout.Partition without day -> *schema.Table

func tableOf(k layout.Partition) *schema.Table {
	key := layout.Partition{Kind: k.Kind, Table: k.Table}
	if t, ok := tables.Load(key); ok {
		return t.(*schema.Table)
	}
	var t *schema.Table
	switch {
	case k.Kind == layout.Events:
		t = schema.EventTable(k.Table)
	case k.Table == schema.Snapshots.Name:
		t = schema.Snapshots.Table()
	default:
		t = schema.Collections[k.Table].Table()
	}
	tables.Store(key, t)
	return t
}

// workFile is a Parquet file assembled in the local work folder.
type workFile struct {
	layout.File
	path string
}

type countWriter struct{ n int64 }

func (c *countWriter) Write(p []byte) (int, error) { c.n += int64(len(p)); return len(p), nil }

// converter runs pass 2 of one plan.
type converter struct {
	f    *flusher
	plan *Plan
	keys *keyResult
	// progress: pass 2 reports the spilled JSON it has mapped, scaled to
	// the plan's share of the spool bytes.
	planBytes, rawDone atomic.Int64

	mu        sync.Mutex
	files     []layout.File
	errorRows int64
}

func (f *flusher) convert(ctx context.Context, p *Plan, keys *keyResult) (*layout.Manifest, error) {
	defer keys.close()
	defer os.RemoveAll(keys.workDir)
	c := &converter{f: f, plan: p, keys: keys}
	for _, s := range keys.segments {
		c.planBytes.Add(s.Bytes)
	}
	// Every partition, largest first, so that the last to finish is small.
	size := map[layout.Partition]int64{}
	for _, s := range keys.spills {
		for k, n := range s.raw {
			size[k] += n
		}
	}
	parts := make([]layout.Partition, 0, len(size))
	for k := range size {
		parts = append(parts, k)
	}
	sort.Slice(parts, func(i, j int) bool {
		if size[parts[i]] != size[parts[j]] {
			return size[parts[i]] > size[parts[j]]
		}
		return parts[i].Less(parts[j])
	})
	jobs := make(chan layout.Partition)
	uploads := make(chan *workFile)
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		defer close(jobs)
		for _, k := range parts {
			select {
			case jobs <- k:
			case <-gctx.Done():
				return gctx.Err()
			}
		}
		return nil
	})
	var writers sync.WaitGroup
	for range max(1, f.opts.Workers) {
		writers.Add(1)
		g.Go(func() error {
			defer writers.Done()
			pw := &partWriter{c: c, uploads: uploads, ev: schema.NewEventMapper(), objs: map[string]*schema.ObjectMapper{},
				batches: map[string]*schema.Batch{}, writers: map[string]*parquetfile.Writer{}}
			for k := range jobs {
				if err := pw.write(gctx, k); err != nil {
					return err
				}
			}
			return nil
		})
	}
	g.Go(func() error {
		writers.Wait()
		close(uploads)
		return nil
	})
	for range max(2, f.opts.Workers) {
		g.Go(func() error {
			for wf := range uploads {
				if err := c.upload(gctx, wf); err != nil {
					return err
				}
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	return c.manifest(), nil
}

// advance reports n more bytes of JSON mapped.
func (c *converter) advance(n int64) {
	done := c.rawDone.Add(n)
	if total := c.keys.rawBytes; total > 0 {
		// Only the increment is added, so the sum never passes the plan's bytes.
		before := (done - n) * c.planBytes.Load() / total
		c.f.progressDone.Add(done*c.planBytes.Load()/total - before)
	}
	c.f.progress("convert")
}

// partWriter is one pass-2 goroutine and what it reuses from partition to
// partition: mappers and a batch per table shape.
type partWriter struct {
	c       *converter
	uploads chan<- *workFile
	ev      *schema.EventMapper
	objs    map[string]*schema.ObjectMapper
	batches map[string]*schema.Batch
	// writers are reset from file to file: a new parquet-go writer grows
	// its column buffers anew. The key-value metadata is the plan's, the
	// same for every file.
	writers map[string]*parquetfile.Writer
	bw      *bufio.Writer

	// The file being written.
	k          layout.Partition
	n          int
	out        *os.File
	sum        hash.Hash
	count      countWriter
	w          *parquetfile.Writer
	wf         *workFile
	groupRows  int
	groupBytes int64
}

// write turns partition k's spilled rows into files.
func (pw *partWriter) write(ctx context.Context, k layout.Partition) error {
	c := pw.c
	t := tableOf(k)
	b := pw.batches[t.SchemaName()]
	if b == nil {
		b = schema.NewBatch(t)
		pw.batches[t.SchemaName()] = b
	}
	b.Table = t
	b.Reset()
	var om *schema.ObjectMapper
	if k.Kind == layout.Objects {
		if om = pw.objs[k.Table]; om == nil {
			col := schema.Collections[k.Table]
			if k.Table == schema.Snapshots.Name {
				col = schema.Snapshots
			}
			if col == nil {
				return fmt.Errorf("segment of unknown collection %q", k.Table)
			}
			om = schema.NewObjectMapper(col)
			pw.objs[k.Table] = om
		}
	}
	merge, err := newSpillMerge(c.keys.workDir, c.keys.spills, k)
	if err != nil {
		return err
	}
	defer merge.close()
	pw.k, pw.n = k, 0
	var errorRows, mapped int64
	defer func() {
		c.mu.Lock()
		c.errorRows += errorRows
		c.mu.Unlock()
	}()
	for {
		e, err := merge.next()
		if err != nil {
			return err
		}
		if e == nil {
			break
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		mapped += int64(len(e.raw))
		if om != nil {
			errs, err := om.Append(b, e.raw, schema.ObjectMeta{SyncID: string(e.extra), SyncedAt: e.recv, Sequence: e.seq, Node: string(e.node)})
			if err != nil {
				return err
			}
			if len(errs) > 0 {
				errorRows++
			}
		} else {
			if c.keys.dups.Dup(int(e.ordinal)) {
				continue
			}
			ev, err := pw.ev.ParseChecked(e.raw)
			if err != nil {
				// Pass 1 checked and parsed it; this cannot happen unless the two parsers disagree.
				q := &spool.Record{ReceivedAt: microTime(e.recv), Node: string(e.node)}
				if err := c.f.quarantine("event", err.Error(), "", e.raw, q); err != nil {
					return err
				}
				continue
			}
			pw.ev.Append(b, ev, schema.Meta{Sequence: e.seq, ReceivedAt: e.recv, Node: string(e.node), Source: string(e.extra)})
			if len(ev.Errors()) > 0 {
				errorRows++
			}
		}
		c.f.events.Add(1)
		if b.Len() >= writeBatchRows {
			if err := pw.writeBatch(ctx, b); err != nil {
				return err
			}
			c.advance(mapped)
			mapped = 0
		}
	}
	if err := pw.writeBatch(ctx, b); err != nil {
		return err
	}
	c.advance(mapped)
	return pw.finishFile(ctx)
}

// writeBatch encodes b into the open row group (opening a file first if
// none is), ends the row group when it is full and the file when it has
// reached its size, then empties b.
func (pw *partWriter) writeBatch(ctx context.Context, b *schema.Batch) error {
	if b.Len() == 0 {
		return nil
	}
	if pw.w == nil {
		if err := pw.openFile(b.Table); err != nil {
			return err
		}
	}
	if err := pw.w.WriteRows(b); err != nil {
		return fmt.Errorf("write %s: %w", pw.wf.path, err)
	}
	seqs := b.Column(b.Table.MustIndex("_sequence")).Ints[:b.Len()]
	for i, s := range seqs {
		if (pw.wf.Rows == 0 && i == 0) || s < pw.wf.MinSequence {
			pw.wf.MinSequence = s
		}
		pw.wf.MaxSequence = max(pw.wf.MaxSequence, s)
	}
	pw.wf.Rows += int64(b.Len())
	pw.groupRows += b.Len()
	pw.groupBytes += int64(b.Bytes())
	b.Reset()
	o := pw.c.f.opts
	if pw.groupRows < o.RowGroupRows && pw.groupBytes < o.RowGroupBytes {
		return nil
	}
	if err := pw.w.Flush(); err != nil {
		return fmt.Errorf("write %s: %w", pw.wf.path, err)
	}
	pw.groupRows, pw.groupBytes = 0, 0
	if pw.count.n+int64(pw.bw.Buffered()) < o.TargetFileBytes {
		return nil
	}
	return pw.finishFile(ctx)
}

func (pw *partWriter) openFile(t *schema.Table) error {
	c, k := pw.c, pw.k
	key := layout.ObjectKey(c.f.opts.Prefix, k, c.plan.Node, c.plan.ID, pw.n)
	path := filepath.Join(c.keys.workDir, fmt.Sprintf("%s.%s.%s.%04d.parquet", k.Kind.Dir(), k.Table, k.Date(), pw.n))
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("work file: %w", err)
	}
	pw.out, pw.sum, pw.count = f, md5.New(), countWriter{}
	if pw.bw == nil {
		pw.bw = bufio.NewWriterSize(nil, 1<<20)
	}
	pw.bw.Reset(io.MultiWriter(f, pw.sum, &pw.count))
	if pw.w = pw.writers[t.SchemaName()]; pw.w == nil {
		pw.w = parquetfile.NewWriter(pw.bw, t, parquetfile.Options{
			KeyValue: map[string]string{"sgload.plan": c.plan.ID, "sgload.node": c.plan.Node}})
		pw.writers[t.SchemaName()] = pw.w
	} else {
		pw.w.Reset(pw.bw)
	}
	pw.wf = &workFile{File: layout.File{Key: key, Kind: k.Kind.Dir(), Table: k.Table, Date: k.Date()}, path: path}
	pw.groupRows, pw.groupBytes = 0, 0
	return nil
}

// finishFile closes the open file, if any, and hands it to the uploaders.
func (pw *partWriter) finishFile(ctx context.Context) error {
	if pw.w == nil {
		return nil
	}
	w, f, wf := pw.w, pw.out, pw.wf
	pw.w, pw.out, pw.wf = nil, nil, nil
	pw.n++
	err := w.Close()
	if err == nil {
		err = pw.bw.Flush()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("write %s: %w", wf.path, err)
	}
	wf.Bytes, wf.MD5 = pw.count.n, pw.sum.Sum(nil)
	select {
	case pw.uploads <- wf:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (c *converter) manifest() *layout.Manifest {
	kind := ""
	if c.plan.Replay {
		kind = "replay"
	}
	k := c.keys
	m := &layout.Manifest{
		Version: layout.ManifestVersion, Kind: kind, Plan: c.plan.ID, Node: c.plan.Node, CreatedAt: c.f.opts.Now().UTC(),
		Sgload: c.f.opts.Version, Segments: k.segments, Tables: map[string]layout.TableStats{},
		Events: k.events, RowsWithErrors: c.errorRows, QuarantinedEvents: k.quarEvents, QuarantinedLines: k.quarLines,
		Skipped:    k.skipped,
		Duplicates: layout.Duplicates{InPlan: int64(k.dups.InPlan), InHistory: int64(k.dups.InHistory)},
	}
	sort.Slice(c.files, func(i, j int) bool { return c.files[i].Key < c.files[j].Key })
	m.Files = append([]layout.File{}, c.files...) // [] rather than null when no row was written
	for i, f := range c.files {
		st := m.Tables[f.Table]
		st.Rows += f.Rows
		st.Files++
		st.Bytes += f.Bytes
		m.Tables[f.Table] = st
		m.Rows += f.Rows
		if i == 0 || f.MinSequence < m.MinSequence {
			m.MinSequence = f.MinSequence
		}
		m.MaxSequence = max(m.MaxSequence, f.MaxSequence)
	}
	return m
}

func microTime(us int64) time.Time { return time.UnixMicro(us).UTC() }

// quarantine keeps data flush cannot load, with what is known of where it
// came from (rec may be nil).
func (f *flusher) quarantine(kind, reason, path string, data []byte, rec *spool.Record) error {
	reason = shortReason(reason)
	q := spool.Quarantined{ReceivedAt: f.opts.Now().UTC(), Reason: "flush: " + reason, Path: path, Body: data}
	if rec != nil {
		q.ReceivedAt, q.Node, q.Auth, q.Header = rec.ReceivedAt, rec.Node, rec.Auth, rec.Header
	}
	if f.opts.DryRun {
		return nil
	}
	name, _, err := spool.WriteQuarantine(f.spool, kind, q)
	if err != nil {
		return err
	}
	f.log.Warn("flush quarantined data it cannot load", "reason", reason, "file", name)
	return nil
}

// shortReason keeps a parser's message to one short line: some quote the
// input, or repeat themselves once per nesting level.
func shortReason(s string) string {
	const limit = 200
	if len(s) <= limit {
		return s
	}
	cut := limit
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + fmt.Sprintf("... (%d bytes)", len(s))
}
