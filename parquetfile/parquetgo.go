package parquetfile

import (
	"fmt"
	"io"

	"github.com/parquet-go/parquet-go"
	"github.com/parquet-go/parquet-go/compress"
	"github.com/parquet-go/parquet-go/encoding"

	"github.com/sgload/sgload/schema"
)

// RowGroupWriter writes one row group per batch.
type RowGroupWriter interface {
	// WriteRowGroup writes b as one row group. b may be reused afterwards.
	WriteRowGroup(b *schema.Batch) error
	// Close writes the footer. The file is incomplete until Close returns nil.
	Close() error
}

// Options tune the encoding.
type Options struct {
	// PageBytes is the target uncompressed size of a data page (default
	// 1 MiB: zstd compresses a page on its own, and smaller pages compress
	// worse). Every open file keeps about this much per busy column.
	PageBytes int
	// KeyValue is written into the footer's key-value metadata.
	KeyValue map[string]string
	// BloomColumns get a split-block Bloom filter per row group (10 bits a
	// value), so engines skip the row groups an equality filter on them
	// (one message, one event, one address) cannot match.
	BloomColumns []string
}

// LookupColumns are the columns people look single rows up by; long-lived
// files (compaction's) carry Bloom filters for them.
var LookupColumns = []string{"sg_message_id", "sg_event_id", "email"}

// Writer writes Parquet with github.com/parquet-go/parquet-go, column by
// column from the batch: no per-row structs, no reflection.
type Writer struct {
	w      *parquet.GenericWriter[any]
	table  *schema.Table
	leaf   []int // table column -> leaf column index in the file schema
	values []parquet.Value
}

var _ RowGroupWriter = (*Writer)(nil)

// ParquetSchema returns the parquet-go schema of t.
func ParquetSchema(t *schema.Table) *parquet.Schema {
	g := parquet.Group{}
	for _, c := range t.Columns {
		l := layoutOf(c)
		var n parquet.Node
		switch c.Kind {
		case schema.String:
			n = parquet.String()
		case schema.Int64:
			n = parquet.Int(64)
		case schema.Bool:
			n = parquet.Leaf(parquet.BooleanType)
		case schema.Timestamp:
			n = parquet.Timestamp(parquet.Microsecond)
		case schema.StringList:
			el := parquet.Node(parquet.String())
			if l.encoding != nil {
				el = parquet.Encoded(el, l.encoding)
			}
			n = parquet.List(parquet.Required(el))
		}
		if l.encoding != nil && c.Kind != schema.StringList {
			n = parquet.Encoded(n, l.encoding)
		}
		if l.codec != nil {
			n = parquet.Compressed(n, l.codec)
		}
		if c.Required {
			n = parquet.Required(n)
		} else {
			n = parquet.Optional(n)
		}
		g[c.Name] = n
	}
	return parquet.NewSchema(t.SchemaName(), g)
}

// columnLayout is how a column is stored when the default (PLAIN, or
// DELTA_LENGTH_BYTE_ARRAY for text, compressed with zstd at its fastest) is
// not the best: chosen by measuring each column's size and encoding time on
// the benchmark's events (BENCHMARKS.md, Flush).
type columnLayout struct {
	encoding encoding.Encoding
	codec    compress.Codec
}

// Columns whose values repeat within a row group (a few hundred distinct
// values) are dictionary-encoded: the pages then hold small integers, which
// is smaller and leaves zstd less to do. _received_at is one of them: one
// value per POST, and flush's rows are sorted by email, not by arrival.
// Integers that stay close (_sequence within a plan, timestamp within a
// day, _synced_at) are delta-encoded: in rows sorted by email they are
// not monotonic, but their differences still take fewer bits than PLAIN's
// eight bytes leave zstd's fastest level. The ids are random text: zstd's
// fastest level stores them as they are, while a stronger level
// entropy-codes them (a quarter smaller, and they are a small part of the
// bytes).
var columnLayouts = func() map[string]columnLayout {
	m := map[string]columnLayout{}
	for _, name := range []string{
		"_node", "_source", "event", "category", "asm_group_id", "useragent", "status", "reason", "type",
		"bounce_classification", "url", "url_offset_index", "url_offset_type", "sg_content_type", "pool_name", "pool_id",
		"send_at", "marketing_campaign_id", "marketing_campaign_name", "marketing_campaign_version",
		"marketing_campaign_split_id", "singlesend_id", "singlesend_name", "template_id", "template_version_id",
		"template_hash", "sg_template_id", "sg_template_name", "mc_stats", "phase_id", "post_type", "sg_user_id",
		"reseller_id", "domain", "attempt",
	} {
		m[name] = columnLayout{encoding: &parquet.RLEDictionary}
	}
	m["_received_at"] = columnLayout{encoding: &parquet.RLEDictionary}
	for _, name := range []string{"_sequence", "_synced_at", "timestamp"} {
		m[name] = columnLayout{encoding: &parquet.DeltaBinaryPacked}
	}
	m["sg_event_id"] = columnLayout{codec: strongZstd}
	return m
}()

func layoutOf(c schema.Column) columnLayout { return columnLayouts[c.Name] }

var noBounds = map[string]bool{
	"_raw": true, "custom_args": true, "_fingerprint": true, "_errors": true,
	"useragent": true, "url": true, "response": true, "reason": true,
}

// NewWriter starts a Parquet file for t on out.
func NewWriter(out io.Writer, t *schema.Table, opts Options) *Writer {
	if opts.PageBytes <= 0 {
		opts.PageBytes = 1 << 20
	}
	s := ParquetSchema(t)
	wopts := []parquet.WriterOption{
		s,
		parquet.Compression(sharedZstd),
		parquet.PageBufferSize(opts.PageBytes),
		parquet.DataPageStatistics(true),
		parquet.CreatedBy("sgload", "1", ""),
	}
	for k, v := range opts.KeyValue {
		wopts = append(wopts, parquet.KeyValueMetadata(k, v))
	}
	var blooms []parquet.BloomFilterColumn
	for _, name := range opts.BloomColumns {
		if i := t.Index(name); i >= 0 && t.Columns[i].Kind == schema.String {
			blooms = append(blooms, parquet.SplitBlockFilter(10, name))
		}
	}
	if len(blooms) > 0 {
		wopts = append(wopts, parquet.BloomFilters(blooms...))
	}
	// Min/max page bounds help engines skip pages when filtering on a
	// column; for long free text nobody filters on, they only cost time.
	for _, c := range t.Columns {
		if noBounds[c.Name] {
			path := []string{c.Name}
			if c.Kind == schema.StringList {
				path = append(path, "list", "element")
			}
			wopts = append(wopts, parquet.SkipPageBounds(path...))
		}
	}
	w := &Writer{w: parquet.NewGenericWriter[any](out, wopts...), table: t, leaf: make([]int, len(t.Columns))}
	byName := map[string]int{}
	for i, path := range s.Columns() {
		byName[path[0]] = i
	}
	for i, c := range t.Columns {
		w.leaf[i] = byName[c.Name]
	}
	return w
}

// WriteRowGroup implements RowGroupWriter.
func (w *Writer) WriteRowGroup(b *schema.Batch) error {
	if err := w.WriteRows(b); err != nil {
		return err
	}
	return w.Flush()
}

// Flush ends the row group the rows written since the last Flush make.
func (w *Writer) Flush() error {
	if err := w.w.Flush(); err != nil {
		return fmt.Errorf("write row group: %w", err)
	}
	return nil
}

// WriteRows adds b's rows to the open row group; b may be reused
// afterwards. Pages are encoded and compressed as they fill, so a row group
// built from many batches holds its compressed pages in memory, not its
// rows.
func (w *Writer) WriteRows(b *schema.Batch) error {
	if b.Len() == 0 {
		return nil
	}
	cws := w.w.ColumnWriters()
	// A value's levels are set only where they are not zero: a column
	// buffer reads the definition and repetition levels of a value, never
	// its column index, and a null or a required value has both at 0.
	// (Value.Level was a tenth of the writer's time.)
	null := parquet.NullValue()
	for i, c := range w.table.Columns {
		col := b.Column(i)
		leaf := w.leaf[i]
		w.values = w.values[:0]
		switch c.Kind {
		case schema.String:
			start := uint32(0)
			for r := 0; r < b.Len(); r++ {
				end := col.Ends[r]
				w.values = append(w.values, cell(parquet.ByteArrayValue(col.Data[start:end]), c.Required, col.Valid[r], leaf))
				start = end
			}
		case schema.Int64, schema.Timestamp:
			for r := 0; r < b.Len(); r++ {
				w.values = append(w.values, cell(parquet.Int64Value(col.Ints[r]), c.Required, col.Valid[r], leaf))
			}
		case schema.Bool:
			for r := 0; r < b.Len(); r++ {
				w.values = append(w.values, cell(parquet.BooleanValue(col.Bools[r]), c.Required, col.Valid[r], leaf))
			}
		case schema.StringList:
			// optional group (LIST) { repeated group list { required binary element } }:
			// definition level 0 = null list, 1 = empty list, 2 = an item.
			item, start := uint32(0), uint32(0)
			for r := 0; r < b.Len(); r++ {
				last := col.Items[r]
				switch {
				case !col.Valid[r]:
					w.values = append(w.values, null)
				case item == last:
					w.values = append(w.values, null.Level(0, 1, leaf))
				default:
					for rep := 0; item < last; item, rep = item+1, 1 {
						end := col.Ends[item]
						w.values = append(w.values, parquet.ByteArrayValue(col.Data[start:end]).Level(rep, 2, leaf))
						start = end
					}
				}
			}
		}
		if _, err := cws[leaf].WriteRowValues(w.values); err != nil {
			return fmt.Errorf("write column %s: %w", c.Name, err)
		}
	}
	if cap(w.values) > 1<<20 {
		w.values = nil
	}
	return nil
}

// cell is v as a required column's value, an optional column's set value,
// or a null.
func cell(v parquet.Value, required, valid bool, leaf int) parquet.Value {
	switch {
	case required:
		return v
	case valid:
		return v.Level(0, 1, leaf)
	}
	return parquet.NullValue()
}

// Reset starts a new file on out with the same table and options, keeping
// the writer's buffers: flush writes thousands of row groups and reusing one
// writer per goroutine keeps allocation, and so GC work, flat.
func (w *Writer) Reset(out io.Writer) { w.w.Reset(out) }

// Close implements RowGroupWriter.
func (w *Writer) Close() error {
	if err := w.w.Close(); err != nil {
		return fmt.Errorf("write parquet footer: %w", err)
	}
	return nil
}
