package parquetfile

import (
	"fmt"
	"io"

	"github.com/apache/arrow/go/v17/arrow"
	"github.com/apache/arrow/go/v17/arrow/array"
	"github.com/apache/arrow/go/v17/arrow/memory"
	"github.com/apache/arrow/go/v17/parquet"
	"github.com/apache/arrow/go/v17/parquet/compress"
	"github.com/apache/arrow/go/v17/parquet/file"
	"github.com/apache/arrow/go/v17/parquet/pqarrow"
	pqschema "github.com/apache/arrow/go/v17/parquet/schema"

	pgparquet "github.com/parquet-go/parquet-go"

	"github.com/sgload/sgload/schema"
)

// ArrowWriter writes the same files with Apache Arrow's Parquet
// implementation. sgload does not use it to write (BENCHMARKS.md, "Parquet
// writer"); it stays so the comparison can be re-run.
type ArrowWriter struct {
	fw     *pqarrow.FileWriter
	schema *arrow.Schema
	table  *schema.Table
	mem    memory.Allocator
}

var _ RowGroupWriter = (*ArrowWriter)(nil)

// ArrowSchema returns the Arrow schema of t.
func ArrowSchema(t *schema.Table) *arrow.Schema {
	fields := make([]arrow.Field, len(t.Columns))
	for i, c := range t.Columns {
		var typ arrow.DataType
		switch c.Kind {
		case schema.String:
			typ = arrow.BinaryTypes.String
		case schema.Int64:
			typ = arrow.PrimitiveTypes.Int64
		case schema.Bool:
			typ = arrow.FixedWidthTypes.Boolean
		case schema.Timestamp:
			typ = &arrow.TimestampType{Unit: arrow.Microsecond, TimeZone: "UTC"}
		case schema.StringList:
			typ = arrow.ListOfNonNullable(arrow.BinaryTypes.String)
		}
		fields[i] = arrow.Field{Name: c.Name, Type: typ, Nullable: !c.Required}
	}
	return arrow.NewSchema(fields, nil)
}

// NewArrowWriter starts a Parquet file for t on out.
func NewArrowWriter(out io.Writer, t *schema.Table, opts Options) (*ArrowWriter, error) {
	if opts.PageBytes <= 0 {
		opts.PageBytes = 256 << 10
	}
	s := ArrowSchema(t)
	props := parquet.NewWriterProperties(
		parquet.WithCompression(compress.Codecs.Zstd),
		parquet.WithCompressionLevel(1), // the same speed setting as the parquet-go writer
		parquet.WithDataPageSize(int64(opts.PageBytes)),
		parquet.WithStats(true),
		parquet.WithMaxRowGroupLength(1<<20),
		parquet.WithCreatedBy("sgload"),
	)
	fw, err := pqarrow.NewFileWriter(s, out, props, pqarrow.NewArrowWriterProperties(pqarrow.WithStoreSchema()))
	if err != nil {
		return nil, fmt.Errorf("arrow parquet writer: %w", err)
	}
	return &ArrowWriter{fw: fw, schema: s, table: t, mem: memory.DefaultAllocator}, nil
}

// WriteRowGroup implements RowGroupWriter.
func (w *ArrowWriter) WriteRowGroup(b *schema.Batch) error {
	if b.Len() == 0 {
		return nil
	}
	rb := array.NewRecordBuilder(w.mem, w.schema)
	defer rb.Release()
	for i, c := range w.table.Columns {
		col := b.Column(i)
		switch c.Kind {
		case schema.String:
			sb := rb.Field(i).(*array.StringBuilder)
			sb.Reserve(b.Len())
			sb.ReserveData(len(col.Data))
			start := uint32(0)
			for r := 0; r < b.Len(); r++ {
				end := col.Ends[r]
				if col.Valid[r] {
					sb.BinaryBuilder.Append(col.Data[start:end])
				} else {
					sb.AppendNull()
				}
				start = end
			}
		case schema.Int64:
			ib := rb.Field(i).(*array.Int64Builder)
			ib.AppendValues(col.Ints[:b.Len()], col.Valid[:b.Len()])
		case schema.Timestamp:
			tb := rb.Field(i).(*array.TimestampBuilder)
			tb.Reserve(b.Len())
			for r := 0; r < b.Len(); r++ {
				if col.Valid[r] {
					tb.UnsafeAppend(arrow.Timestamp(col.Ints[r]))
				} else {
					tb.UnsafeAppendBoolToBitmap(false)
				}
			}
		case schema.Bool:
			bb := rb.Field(i).(*array.BooleanBuilder)
			bb.AppendValues(col.Bools[:b.Len()], col.Valid[:b.Len()])
		case schema.StringList:
			lb := rb.Field(i).(*array.ListBuilder)
			vb := lb.ValueBuilder().(*array.StringBuilder)
			item, start := uint32(0), uint32(0)
			for r := 0; r < b.Len(); r++ {
				if !col.Valid[r] {
					lb.AppendNull()
					continue
				}
				lb.Append(true)
				for ; item < col.Items[r]; item++ {
					end := col.Ends[item]
					vb.BinaryBuilder.Append(col.Data[start:end])
					start = end
				}
			}
		}
	}
	rec := rb.NewRecord()
	defer rec.Release()
	if err := w.fw.Write(rec); err != nil {
		return fmt.Errorf("write row group: %w", err)
	}
	return nil
}

// Close implements RowGroupWriter.
func (w *ArrowWriter) Close() error {
	if err := w.fw.Close(); err != nil {
		return fmt.Errorf("write parquet footer: %w", err)
	}
	return nil
}

// ArrowColumnWriter writes the same files with Arrow's low-level column
// writers, which take typed slices and levels (no Arrow arrays, no value per
// cell): what parquet-go's public API lacks. It mirrors the parquet-go
// writer's choices (zstd's fastest level, a stronger one for sg_event_id,
// the same dictionary and delta columns, DELTA_LENGTH_BYTE_ARRAY for other
// text, 1 MiB pages) so the comparison is of the implementations.
type ArrowColumnWriter struct {
	w     *file.Writer
	table *schema.Table
	defs  []int16
	reps  []int16
	bytes []parquet.ByteArray
	ints  []int64
	bools []bool
}

var _ RowGroupWriter = (*ArrowColumnWriter)(nil)

// NewArrowColumnWriter starts a Parquet file for t on out.
func NewArrowColumnWriter(out io.Writer, t *schema.Table) (*ArrowColumnWriter, error) {
	props := []parquet.WriterProperty{parquet.WithCompression(compress.Codecs.Zstd), parquet.WithCompressionLevel(1),
		parquet.WithDictionaryDefault(false), parquet.WithDataPageSize(1 << 20), parquet.WithStats(true),
		parquet.WithCreatedBy("sgload")}
	var nodes pqschema.FieldList
	for _, c := range t.Columns {
		rep := parquet.Repetitions.Optional
		if c.Required {
			rep = parquet.Repetitions.Required
		}
		l := layoutOf(c)
		if l.codec == strongZstd {
			props = append(props, parquet.WithCompressionLevelFor(c.Name, 7)) // zstd's level of SpeedBetterCompression
		}
		switch {
		case l.encoding == &pgparquet.RLEDictionary:
			props = append(props, parquet.WithDictionaryFor(c.Name, true))
		case l.encoding == &pgparquet.DeltaBinaryPacked:
			props = append(props, parquet.WithEncodingFor(c.Name, parquet.Encodings.DeltaBinaryPacked))
		case c.Kind == schema.String:
			props = append(props, parquet.WithEncodingFor(c.Name, parquet.Encodings.DeltaLengthByteArray))
		}
		var n pqschema.Node
		var err error
		switch c.Kind {
		case schema.String:
			n, err = pqschema.NewPrimitiveNodeLogical(c.Name, rep, pqschema.StringLogicalType{}, parquet.Types.ByteArray, -1, -1)
		case schema.Int64:
			n, err = pqschema.NewPrimitiveNodeLogical(c.Name, rep, pqschema.NewIntLogicalType(64, true), parquet.Types.Int64, -1, -1)
		case schema.Timestamp:
			n, err = pqschema.NewPrimitiveNodeLogical(c.Name, rep, pqschema.NewTimestampLogicalType(true, pqschema.TimeUnitMicros), parquet.Types.Int64, -1, -1)
		case schema.Bool:
			n, err = pqschema.NewPrimitiveNode(c.Name, rep, parquet.Types.Boolean, -1, -1)
		case schema.StringList:
			var el pqschema.Node
			// ListOf names the list after its element node and the element "element".
			if el, err = pqschema.NewPrimitiveNodeLogical(c.Name, parquet.Repetitions.Required, pqschema.StringLogicalType{}, parquet.Types.ByteArray, -1, -1); err == nil {
				n, err = pqschema.ListOf(el, rep, -1)
			}
		}
		if err != nil {
			return nil, fmt.Errorf("arrow schema: %w", err)
		}
		nodes = append(nodes, n)
	}
	root, err := pqschema.NewGroupNode(t.SchemaName(), parquet.Repetitions.Required, nodes, -1)
	if err != nil {
		return nil, fmt.Errorf("arrow schema: %w", err)
	}
	return &ArrowColumnWriter{w: file.NewParquetWriter(out, root, file.WithWriterProps(parquet.NewWriterProperties(props...))), table: t}, nil
}

// WriteRowGroup implements RowGroupWriter.
func (w *ArrowColumnWriter) WriteRowGroup(b *schema.Batch) error {
	rg := w.w.AppendRowGroup()
	n := b.Len()
	for i, c := range w.table.Columns {
		col := b.Column(i)
		cw, err := rg.NextColumn()
		if err != nil {
			return err
		}
		var defs []int16
		if !c.Required {
			w.defs = w.defs[:0]
			for r := 0; r < n; r++ {
				d := int16(0)
				if col.Valid[r] {
					d = 1
				}
				w.defs = append(w.defs, d)
			}
			defs = w.defs
		}
		switch c.Kind {
		case schema.String:
			w.bytes = w.bytes[:0]
			start := uint32(0)
			for r := 0; r < n; r++ {
				if col.Valid[r] {
					w.bytes = append(w.bytes, col.Data[start:col.Ends[r]])
				}
				start = col.Ends[r]
			}
			_, err = cw.(*file.ByteArrayColumnChunkWriter).WriteBatch(w.bytes, defs, nil)
		case schema.Int64, schema.Timestamp:
			w.ints = present(w.ints[:0], col.Ints[:n], col.Valid)
			_, err = cw.(*file.Int64ColumnChunkWriter).WriteBatch(w.ints, defs, nil)
		case schema.Bool:
			w.bools = present(w.bools[:0], col.Bools[:n], col.Valid)
			_, err = cw.(*file.BooleanColumnChunkWriter).WriteBatch(w.bools, defs, nil)
		case schema.StringList:
			// Definition level 0 = null list, 1 = empty list, 2 = an item.
			w.defs, w.reps, w.bytes = w.defs[:0], w.reps[:0], w.bytes[:0]
			item, start := uint32(0), uint32(0)
			for r := 0; r < n; r++ {
				switch last := col.Items[r]; {
				case !col.Valid[r]:
					w.defs, w.reps = append(w.defs, 0), append(w.reps, 0)
				case item == last:
					w.defs, w.reps = append(w.defs, 1), append(w.reps, 0)
				default:
					for rep := int16(0); item < last; item, rep = item+1, 1 {
						w.bytes = append(w.bytes, col.Data[start:col.Ends[item]])
						w.defs, w.reps = append(w.defs, 2), append(w.reps, rep)
						start = col.Ends[item]
					}
				}
			}
			_, err = cw.(*file.ByteArrayColumnChunkWriter).WriteBatch(w.bytes, w.defs, w.reps)
		}
		if err != nil {
			return fmt.Errorf("write column %s: %w", c.Name, err)
		}
		if err := cw.Close(); err != nil {
			return fmt.Errorf("write column %s: %w", c.Name, err)
		}
	}
	return rg.Close()
}

// Close implements RowGroupWriter.
func (w *ArrowColumnWriter) Close() error { return w.w.Close() }

// present appends the values of vals whose row is valid (not null).
func present[T any](dst, vals []T, valid []bool) []T {
	for r, v := range vals {
		if valid[r] {
			dst = append(dst, v)
		}
	}
	return dst
}
