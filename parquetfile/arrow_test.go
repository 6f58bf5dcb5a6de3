package parquetfile

import (
	"fmt"
	"io"

	"github.com/apache/arrow/go/v17/arrow"
	"github.com/apache/arrow/go/v17/arrow/array"
	"github.com/apache/arrow/go/v17/arrow/memory"
	"github.com/apache/arrow/go/v17/parquet"
	"github.com/apache/arrow/go/v17/parquet/compress"
	"github.com/apache/arrow/go/v17/parquet/pqarrow"

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
