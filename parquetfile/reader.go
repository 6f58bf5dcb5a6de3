package parquetfile

import (
	"errors"
	"fmt"
	"io"

	"github.com/parquet-go/parquet-go"

	"github.com/sgload/sgload/schema"
)

// Reader reads a Parquet file of a table sgload writes back into batches,
// one row group at a time, so memory holds one row group's pages and the
// rows asked for, whatever the file's size. Columns are matched by name;
// a column the file lacks (written by an older release) reads as null.
type Reader struct {
	pf    *parquet.File
	table *schema.Table
	col   []int // leaf column in the file -> column of the table, -1 if none
	rg    int
	rows  parquet.Rows
	buf   []parquet.Row
	items [][]byte
}

// OpenReader opens the Parquet file in r (size bytes) as rows of t.
func OpenReader(r io.ReaderAt, size int64, t *schema.Table) (*Reader, error) {
	pf, err := parquet.OpenFile(r, size, parquet.SkipBloomFilters(true), parquet.SkipPageIndex(true))
	if err != nil {
		return nil, fmt.Errorf("open parquet: %w", err)
	}
	rd := &Reader{pf: pf, table: t, buf: make([]parquet.Row, 64)}
	for _, path := range pf.Schema().Columns() {
		rd.col = append(rd.col, t.Index(path[0]))
	}
	return rd, nil
}

// NumRows is the number of rows in the file.
func (r *Reader) NumRows() int64 { return r.pf.NumRows() }

// KeyValue returns the footer's key-value metadata for key.
func (r *Reader) KeyValue(key string) (string, bool) { return r.pf.Lookup(key) }

// Read appends up to max rows to b (a batch of the reader's table) and
// returns how many; io.EOF once every row has been read.
func (r *Reader) Read(b *schema.Batch, max int) (int, error) {
	n := 0
	for n < max {
		if r.rows == nil {
			if r.rg == len(r.pf.RowGroups()) {
				if n == 0 {
					return 0, io.EOF
				}
				return n, nil
			}
			r.rows = r.pf.RowGroups()[r.rg].Rows()
			r.rg++
		}
		want := min(max-n, len(r.buf))
		got, err := r.rows.ReadRows(r.buf[:want])
		for _, row := range r.buf[:got] {
			if cerr := r.append(b, row); cerr != nil {
				return n, cerr
			}
			n++
		}
		if errors.Is(err, io.EOF) {
			_ = r.rows.Close()
			r.rows = nil
			continue
		}
		if err != nil {
			return n, fmt.Errorf("read parquet rows: %w", err)
		}
	}
	return n, nil
}

// append adds one row, given as its leaf values in column order.
func (r *Reader) append(b *schema.Batch, row parquet.Row) error {
	for i := 0; i < len(row); {
		leaf := row[i].Column()
		j := i + 1
		for j < len(row) && row[j].Column() == leaf {
			j++
		}
		vals := row[i:j]
		i = j
		if leaf < 0 || leaf >= len(r.col) || r.col[leaf] < 0 {
			continue
		}
		c := r.col[leaf]
		switch r.table.Columns[c].Kind {
		case schema.String:
			if !vals[0].IsNull() {
				b.SetString(c, vals[0].ByteArray())
			}
		case schema.Int64, schema.Timestamp:
			if !vals[0].IsNull() {
				b.SetInt64(c, vals[0].Int64())
			}
		case schema.Bool:
			if !vals[0].IsNull() {
				b.SetBool(c, vals[0].Boolean())
			}
		case schema.StringList:
			// Definition level 0: a null list; 1: an empty list; 2: items.
			if vals[0].DefinitionLevel() == 0 {
				continue
			}
			r.items = r.items[:0]
			for _, v := range vals {
				if v.DefinitionLevel() == 2 {
					r.items = append(r.items, v.ByteArray())
				}
			}
			if r.items == nil {
				r.items = [][]byte{}
			}
			b.SetList(c, r.items)
		default:
			return fmt.Errorf("column %s: unknown kind", r.table.Columns[c].Name)
		}
	}
	b.End()
	return nil
}
