package loader

import (
	"bufio"
	"context"
	"crypto/md5"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"unicode/utf8"

	"golang.org/x/sync/errgroup"

	"github.com/sgload/sgload/layout"
	"github.com/sgload/sgload/parquetfile"
	"github.com/sgload/sgload/schema"
	"github.com/sgload/sgload/spool"
)

// Pass 2 of a plan, the conversion:
//
//	reader --record i--> mapper i%W --row groups--> encoders --chunks--> (plan end) assemble --> upload
//
// Mapper w owns the records i with i%W == w and its own rows per partition;
// it cuts a row group when a partition's rows reach RowGroupBytes or its rows
// in all reach MemoryBytes/W. Encoders write each row group as a chunk file
// named by (partition, mapper, n). At the end of the plan the chunks of each
// partition are sorted by name and copied, compressed pages verbatim, into
// files of about TargetFileBytes. Everything that decides what goes where
// depends on the data, W (kept in the plan) and the tuning flags, never on
// timing, so output is reproducible; exactly-once rests on the journal, not
// on that (undo deletes a failed attempt's objects first).

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

// rows is a mapper's rows of one partition, not yet encoded.
type rows struct {
	key    layout.Partition
	batch  *schema.Batch
	nextRG int // row groups cut so far
}

// chunk is one encoded row group, a small Parquet file of its own: no
// writer stays open between row groups, so memory does not grow with the
// number of partitions.
type chunk struct {
	path           string
	mapper, n      int
	bytes, rows    int64
	minSeq, maxSeq int64
}

// workFile is a Parquet file assembled in the local work folder.
type workFile struct {
	layout.File
	path string
}

type countWriter struct{ n int64 }

func (c *countWriter) Write(p []byte) (int, error) { c.n += int64(len(p)); return len(p), nil }

type encodeJob struct {
	key    layout.Partition
	mapper int
	n      int
	batch  *schema.Batch
	done   chan<- *schema.Batch // the emptied batch goes back to its mapper
}

// converter runs pass 2 of one plan.
type converter struct {
	f       *flusher
	plan    *Plan
	keys    *keyResult
	workDir string
	bufs    bodies
	flight  chan struct{} // bounds row groups handed to encoders
	encodes chan encodeJob

	mu     sync.Mutex
	chunks map[layout.Partition][]chunk
	files  []layout.File

	events, errorRows, quarEvents, quarLines int64
}

func (f *flusher) convert(ctx context.Context, p *Plan, keys *keyResult) (*layout.Manifest, error) {
	workers := max(p.Workers, 1)
	c := &converter{
		f: f, plan: p, keys: keys, workDir: f.journal.workDir(p.ID),
		bufs:    newBodies(),
		flight:  make(chan struct{}, 2),
		encodes: make(chan encodeJob),
		chunks:  map[layout.Partition][]chunk{},
	}
	if err := os.MkdirAll(c.workDir, 0o755); err != nil {
		return nil, fmt.Errorf("work folder: %w", err)
	}
	defer os.RemoveAll(c.workDir)

	g, gctx := errgroup.WithContext(ctx)
	inputs := make([]chan item, workers)
	for i := range inputs {
		inputs[i] = make(chan item, 2)
	}
	g.Go(func() error {
		defer func() {
			for _, in := range inputs {
				close(in)
			}
		}()
		return readPlan(gctx, f.spool.Root, p, c.bufs, func(it item) error {
			select {
			case inputs[it.seq%workers] <- it:
				return nil
			case <-gctx.Done():
				return gctx.Err()
			}
		})
	})
	var mappers sync.WaitGroup
	for w := range workers {
		mappers.Add(1)
		g.Go(func() error {
			defer mappers.Done()
			return c.mapper(gctx, w, workers, inputs[w])
		})
	}
	for range max(2, f.opts.Workers) {
		g.Go(func() error {
			e := &encoder{}
			for job := range c.encodes {
				err := c.encode(e, job)
				if job.key.Kind == layout.Events { // event batches share one shape and are reused
					job.batch.Reset()
					select {
					case job.done <- job.batch:
					default: // the mapper keeps enough; drop this one
					}
				}
				<-c.flight
				if err != nil {
					return err
				}
			}
			return nil
		})
	}
	g.Go(func() error {
		mappers.Wait()
		close(c.encodes)
		return nil
	})
	if err := g.Wait(); err != nil {
		return nil, err
	}
	if err := c.assembleAll(ctx); err != nil {
		return nil, err
	}
	return c.manifest(), nil
}

// mapper turns its share of the records into row groups.
func (c *converter) mapper(ctx context.Context, w, workers int, in <-chan item) error {
	m := schema.NewEventMapper()
	objMappers := map[string]*schema.ObjectMapper{}
	parts := map[layout.Partition]*rows{}
	free := make(chan *schema.Batch, 2)
	budget := c.f.opts.MemoryBytes / int64(workers)
	var held int64
	var nevents, errorRows, quarEvents, quarLines int64
	defer func() {
		c.mu.Lock()
		c.events += nevents
		c.errorRows += errorRows
		c.quarEvents += quarEvents
		c.quarLines += quarLines
		c.mu.Unlock()
	}()
	submit := func(r *rows) error {
		b := r.batch
		if b == nil || b.Len() == 0 {
			return nil
		}
		r.batch = nil
		held -= int64(b.Bytes())
		select {
		case c.flight <- struct{}{}: // backpressure only: it waits, decides nothing
		case <-ctx.Done():
			return ctx.Err()
		}
		job := encodeJob{key: r.key, mapper: w, n: r.nextRG, batch: b, done: free}
		r.nextRG++
		select {
		case c.encodes <- job:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	// evict submits the largest partitions' rows until the mapper holds
	// less than its budget.
	evict := func() error {
		for held >= budget {
			var largest *rows
			for _, r := range parts {
				if r.batch != nil && (largest == nil || r.batch.Bytes() > largest.batch.Bytes() ||
					(r.batch.Bytes() == largest.batch.Bytes() && r.key.Less(largest.key))) {
					largest = r
				}
			}
			if largest == nil {
				return nil
			}
			if err := submit(largest); err != nil {
				return err
			}
		}
		return nil
	}
	for it := range in {
		if it.corrupt != nil {
			if err := c.quarantine("line", it.corrupt.Err.Error(), it.corrupt.Path, it.corrupt.Line, nil); err != nil {
				return err
			}
			quarLines++
			continue
		}
		rec := it.rec
		if coll := spool.ObjectCollection(c.plan.Segments[it.seg].Path); coll != "" {
			n, errs, err := c.mapObjects(objMappers, coll, rec, parts, submit, &held)
			if err != nil {
				return err
			}
			nevents += int64(n)
			errorRows += int64(errs)
			c.done(rec)
			if err := evict(); err != nil {
				return err
			}
			continue
		}
		nevents += int64(rec.Events)
		evs, ok := rec.Split()
		if !ok {
			if err := c.quarantine("record", "body does not hold the record's events", "", rec.Body, rec); err != nil {
				return err
			}
			quarEvents += int64(rec.Events)
			c.done(rec)
			continue
		}
		recv := rec.ReceivedAt.UnixMicro()
		for i, raw := range evs {
			if c.keys.dups.Dup(it.base + i) {
				continue
			}
			e, err := m.Parse(raw)
			if err != nil {
				if err := c.quarantine("event", err.Error(), "", raw, rec); err != nil {
					return err
				}
				quarEvents++
				continue
			}
			k := layout.Partition{Kind: layout.Events, Table: e.Table, Day: eventDay(e.Time, rec)}
			r := parts[k]
			if r == nil {
				r = &rows{key: k}
				parts[k] = r
			}
			if r.batch == nil {
				select {
				case r.batch = <-free:
				default:
					r.batch = schema.NewBatch(schema.EventTable(k.Table))
				}
				r.batch.Table = tableOf(k)
			}
			before := r.batch.Bytes()
			m.Append(r.batch, e, schema.Meta{Sequence: rec.Sequence + int64(i), ReceivedAt: recv, Node: rec.Node})
			held += int64(r.batch.Bytes() - before)
			if len(e.Errors()) > 0 {
				errorRows++
			}
			if int64(r.batch.Bytes()) >= c.f.opts.RowGroupBytes {
				if err := submit(r); err != nil {
					return err
				}
			}
		}
		c.done(rec)
		if err := evict(); err != nil {
			return err
		}
	}
	keys := make([]layout.Partition, 0, len(parts))
	for k := range parts {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i].Less(keys[j]) })
	for _, k := range keys {
		if err := submit(parts[k]); err != nil {
			return err
		}
	}
	return nil
}

// done accounts for a record whose rows hold copies of what they need.
func (c *converter) done(rec *spool.Record) {
	c.f.progressDone.Add(int64(len(rec.Body)))
	c.f.events.Add(int64(rec.Events))
	c.f.progress("convert")
	c.bufs.put(rec)
}

func (c *converter) quarantine(kind, reason, path string, data []byte, rec *spool.Record) error {
	reason = shortReason(reason)
	q := spool.Quarantined{ReceivedAt: c.f.opts.Now().UTC(), Reason: "flush: " + reason, Path: path, Body: data}
	if rec != nil {
		q.ReceivedAt, q.Node, q.Auth, q.Header = rec.ReceivedAt, rec.Node, rec.Auth, rec.Header
	}
	if c.f.opts.DryRun {
		return nil
	}
	name, _, err := spool.WriteQuarantine(c.f.spool, kind, q)
	if err != nil {
		return err
	}
	c.f.log.Warn("flush quarantined data it cannot load", "reason", reason, "file", name)
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

// encoder is one encoding goroutine's reusable state: a writer per table
// shape (all event tables share one).
type encoder struct {
	writers map[string]*parquetfile.Writer
	bw      *bufio.Writer
}

// encode writes one row group as a chunk file.
func (c *converter) encode(e *encoder, job encodeJob) error {
	path := filepath.Join(c.workDir, fmt.Sprintf("%s.%s.%s.%03d.%06d.chunk", job.key.Kind.Dir(), job.key.Table, job.key.Date(), job.mapper, job.n))
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("work file: %w", err)
	}
	cw := &countWriter{}
	if e.bw == nil {
		e.bw = bufio.NewWriterSize(nil, 256<<10)
	}
	e.bw.Reset(io.MultiWriter(f, cw))
	shape := tableOf(job.key).SchemaName()
	if e.writers == nil {
		e.writers = map[string]*parquetfile.Writer{}
	}
	w := e.writers[shape]
	if w == nil {
		w = parquetfile.NewWriter(e.bw, tableOf(job.key), parquetfile.Options{})
		e.writers[shape] = w
	} else {
		w.Reset(e.bw)
	}
	err = w.WriteRowGroup(job.batch)
	if err == nil {
		err = w.Close()
	}
	if err == nil {
		err = e.bw.Flush()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	ch := chunk{path: path, mapper: job.mapper, n: job.n, bytes: cw.n, rows: int64(job.batch.Len())}
	for i, s := range job.batch.Column(0).Ints[:job.batch.Len()] {
		if i == 0 || s < ch.minSeq {
			ch.minSeq = s
		}
		ch.maxSeq = max(ch.maxSeq, s)
	}
	c.mu.Lock()
	c.chunks[job.key] = append(c.chunks[job.key], ch)
	c.mu.Unlock()
	return nil
}

// assembleAll turns each partition's chunks, in (mapper, n) order, into
// files of about TargetFileBytes and uploads them, several at a time.
func (c *converter) assembleAll(ctx context.Context) error {
	keys := make([]layout.Partition, 0, len(c.chunks))
	for k, chs := range c.chunks {
		keys = append(keys, k)
		sort.Slice(chs, func(i, j int) bool {
			if chs[i].mapper != chs[j].mapper {
				return chs[i].mapper < chs[j].mapper
			}
			return chs[i].n < chs[j].n
		})
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i].Less(keys[j]) })
	type fileJob struct {
		key    layout.Partition
		n      int
		chunks []chunk
	}
	var jobs []fileJob
	for _, k := range keys {
		var cur []chunk
		var size int64
		n := 0
		for _, ch := range c.chunks[k] {
			cur = append(cur, ch)
			size += ch.bytes
			if size >= c.f.opts.TargetFileBytes {
				jobs = append(jobs, fileJob{k, n, cur})
				cur, size, n = nil, 0, n+1
			}
		}
		if len(cur) > 0 {
			jobs = append(jobs, fileJob{k, n, cur})
		}
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(max(2, c.f.opts.Workers))
	for _, j := range jobs {
		g.Go(func() error {
			wf, err := c.assemble(j.key, j.n, j.chunks)
			if err != nil {
				return err
			}
			return c.upload(gctx, wf)
		})
	}
	return g.Wait()
}

// assemble copies chunks into the partition's file number n.
func (c *converter) assemble(k layout.Partition, n int, chunks []chunk) (*workFile, error) {
	date := k.Date()
	key := layout.ObjectKey(c.f.opts.Prefix, k, c.plan.Node, c.plan.ID, n)
	path := filepath.Join(c.workDir, fmt.Sprintf("%s.%s.%s.%04d.parquet", k.Kind.Dir(), k.Table, date, n))
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("work file: %w", err)
	}
	defer f.Close()
	sum, count := md5.New(), &countWriter{}
	bw := bufio.NewWriterSize(io.MultiWriter(f, sum, count), 256<<10)
	w := parquetfile.NewWriter(bw, tableOf(k), parquetfile.Options{
		KeyValue: map[string]string{"sgload.plan": c.plan.ID, "sgload.node": c.plan.Node},
	})
	wf := &workFile{File: layout.File{Key: key, Kind: k.Kind.Dir(), Table: k.Table, Date: date}, path: path}
	for i, ch := range chunks {
		rows, err := w.CopyRowGroups(ch.path)
		if err != nil {
			return nil, err
		}
		if rows != ch.rows {
			return nil, fmt.Errorf("chunk %s: copied %d rows, wrote %d", ch.path, rows, ch.rows)
		}
		if i == 0 || ch.minSeq < wf.MinSequence {
			wf.MinSequence = ch.minSeq
		}
		wf.MaxSequence = max(wf.MaxSequence, ch.maxSeq)
		wf.Rows += ch.rows
		_ = os.Remove(ch.path)
	}
	if err := w.Close(); err != nil {
		return nil, fmt.Errorf("finish %s: %w", path, err)
	}
	if err := bw.Flush(); err != nil {
		return nil, fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return nil, fmt.Errorf("close %s: %w", path, err)
	}
	wf.Bytes, wf.MD5 = count.n, sum.Sum(nil)
	return wf, nil
}

func (c *converter) manifest() *layout.Manifest {
	m := &layout.Manifest{
		Version: layout.ManifestVersion, Plan: c.plan.ID, Node: c.plan.Node, CreatedAt: c.f.opts.Now().UTC(),
		Sgload: c.f.opts.Version, Segments: c.keys.segments, Tables: map[string]layout.TableStats{},
		Events: c.events, RowsWithErrors: c.errorRows, QuarantinedEvents: c.quarEvents, QuarantinedLines: c.quarLines,
		Duplicates: layout.Duplicates{InPlan: int64(c.keys.dups.InPlan), InHistory: int64(c.keys.dups.InHistory)},
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

// mapObjects turns one snapshot record into rows of its collection (or, for
// the record that closes a snapshot, a row of sync_snapshots). Object rows
// are partitioned by the day of the sync.
func (c *converter) mapObjects(mappers map[string]*schema.ObjectMapper, coll string, rec *spool.Record,
	parts map[layout.Partition]*rows, submit func(*rows) error, held *int64) (n, errRows int, err error) {
	table := coll
	if rec.Header[spool.HeaderSnapshot] == "complete" {
		table = schema.Snapshots.Name
	}
	m := mappers[table]
	if m == nil {
		col := schema.Collections[table]
		if table == schema.Snapshots.Name {
			col = schema.Snapshots
		}
		if col == nil {
			return 0, 0, fmt.Errorf("segment of unknown collection %q", table)
		}
		m = schema.NewObjectMapper(col)
		mappers[table] = m
	}
	k := layout.Partition{Kind: layout.Objects, Table: table, Day: eventDay(0, rec)}
	r := parts[k]
	if r == nil {
		r = &rows{key: k}
		parts[k] = r
	}
	if r.batch == nil {
		r.batch = schema.NewBatch(m.Table())
	}
	meta := schema.ObjectMeta{SyncID: rec.Header[spool.HeaderSyncID], SyncedAt: rec.ReceivedAt.UnixMicro(), Node: rec.Node}
	objs, ok := rec.Split()
	if !ok {
		// Sync wrote this record whole (CRC-checked); quarantining part of
		// a snapshot would make objects look deleted, so stop instead.
		return 0, 0, fmt.Errorf("%s snapshot record at sequence %d does not hold its %d objects", table, rec.Sequence, rec.Events)
	}
	for i, obj := range objs {
		meta.Sequence = rec.Sequence + int64(i)
		before := r.batch.Bytes()
		errs, err := m.Append(r.batch, obj, meta)
		if err != nil {
			return 0, 0, err
		}
		*held += int64(r.batch.Bytes() - before)
		if len(errs) > 0 {
			errRows++
		}
	}
	if int64(r.batch.Bytes()) >= c.f.opts.RowGroupBytes {
		if err := submit(r); err != nil {
			return 0, 0, err
		}
	}
	return len(objs), errRows, nil
}
