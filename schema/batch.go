package schema

// Batch collects rows of one table column by column. Values are copied in,
// so callers may reuse their buffers. A row is filled with the Set methods
// (a column not set is null) and closed with End.
type Batch struct {
	Table *Table
	cols  []ColumnData
	rows  int
	// bytes is what the rows hold (values, offsets, validity), for the
	// flush memory budget. It counts lengths, not capacities, so that it
	// depends on the data alone: flush cuts row groups by it and must cut
	// them the same way on a redo.
	bytes int
}

// ColumnData is one column's values. Strings are kept as offsets into one
// byte slice so a batch of a million rows is a handful of allocations.
type ColumnData struct {
	Kind  Kind
	Valid []bool   // per row; false = null
	Ints  []int64  // Int64 and Timestamp
	Bools []bool   // Bool
	Data  []byte   // String and StringList values, back to back
	Ends  []uint32 // String: end of row i's value in Data; StringList: end of item i
	Items []uint32 // StringList: end of row i's items in Ends
}

// NewBatch returns an empty batch for t.
func NewBatch(t *Table) *Batch {
	b := &Batch{Table: t, cols: make([]ColumnData, len(t.Columns))}
	for i, c := range t.Columns {
		b.cols[i].Kind = c.Kind
	}
	return b
}

// Len is the number of complete rows.
func (b *Batch) Len() int { return b.rows }

// Bytes approximates the memory the batch holds.
func (b *Batch) Bytes() int { return b.bytes }

// Column returns column i's data (for writers).
func (b *Batch) Column(i int) *ColumnData { return &b.cols[i] }

// Reset empties the batch, keeping its buffers.
func (b *Batch) Reset() {
	for i := range b.cols {
		c := &b.cols[i]
		c.Valid, c.Ints, c.Bools, c.Data, c.Ends, c.Items = c.Valid[:0], c.Ints[:0], c.Bools[:0], c.Data[:0], c.Ends[:0], c.Items[:0]
	}
	b.rows, b.bytes = 0, 0
}

// End closes the row: every column not set is null.
func (b *Batch) End() {
	for i := range b.cols {
		c := &b.cols[i]
		if len(c.Valid) == b.rows {
			b.null(c)
		}
	}
	b.rows++
}

func (b *Batch) null(c *ColumnData) {
	c.Valid = append(c.Valid, false)
	switch c.Kind {
	case Int64, Timestamp:
		c.Ints = append(c.Ints, 0)
		b.bytes += 8
	case Bool:
		c.Bools = append(c.Bools, false)
		b.bytes++
	case String:
		c.Ends = append(c.Ends, uint32(len(c.Data)))
		b.bytes += 4
	case StringList:
		c.Items = append(c.Items, uint32(len(c.Ends)))
		b.bytes += 4
	}
	b.bytes++ // Valid
}

// SetString sets column i (String) in the open row. Setting a column twice
// in one row keeps the first value.
func (b *Batch) SetString(i int, v []byte) {
	c := &b.cols[i]
	if len(c.Valid) > b.rows {
		return
	}
	c.Valid = append(c.Valid, true)
	c.Data = append(c.Data, v...)
	c.Ends = append(c.Ends, uint32(len(c.Data)))
	b.bytes += 1 + len(v) + 4
}

// SetInt64 sets column i (Int64 or Timestamp) in the open row.
func (b *Batch) SetInt64(i int, v int64) {
	c := &b.cols[i]
	if len(c.Valid) > b.rows {
		return
	}
	c.Valid = append(c.Valid, true)
	c.Ints = append(c.Ints, v)
	b.bytes += 1 + 8
}

// SetBool sets column i (Bool) in the open row.
func (b *Batch) SetBool(i int, v bool) {
	c := &b.cols[i]
	if len(c.Valid) > b.rows {
		return
	}
	c.Valid = append(c.Valid, true)
	c.Bools = append(c.Bools, v)
	b.bytes += 2
}

// SetList sets column i (StringList) in the open row to items; an empty,
// non-nil slice is an empty list, nil is null.
func (b *Batch) SetList(i int, items [][]byte) {
	c := &b.cols[i]
	if len(c.Valid) > b.rows {
		return
	}
	if items == nil {
		b.null(c)
		return
	}
	c.Valid = append(c.Valid, true)
	for _, it := range items {
		c.Data = append(c.Data, it...)
		c.Ends = append(c.Ends, uint32(len(c.Data)))
		b.bytes += len(it) + 4
	}
	c.Items = append(c.Items, uint32(len(c.Ends)))
	b.bytes += 1 + 4
}

// StringAt returns row r's value of a String column (nil when null).
func (c *ColumnData) StringAt(r int) []byte {
	if !c.Valid[r] {
		return nil
	}
	start := uint32(0)
	if r > 0 {
		start = c.Ends[r-1]
	}
	return c.Data[start:c.Ends[r]]
}

// ListAt returns row r's items of a StringList column (nil when null).
func (c *ColumnData) ListAt(r int) [][]byte {
	if !c.Valid[r] {
		return nil
	}
	first := uint32(0)
	if r > 0 {
		first = c.Items[r-1]
	}
	out := make([][]byte, 0, c.Items[r]-first)
	for it := first; it < c.Items[r]; it++ {
		start := uint32(0)
		if it > 0 {
			start = c.Ends[it-1]
		}
		out = append(out, c.Data[start:c.Ends[it]])
	}
	return out
}

// AppendBatch appends src's rows to b (same columns).
func (b *Batch) AppendBatch(src *Batch) {
	for i := range b.cols {
		d, s := &b.cols[i], &src.cols[i]
		d.Valid = appendGrow(d.Valid, s.Valid)
		switch d.Kind {
		case Int64, Timestamp:
			d.Ints = appendGrow(d.Ints, s.Ints)
		case Bool:
			d.Bools = appendGrow(d.Bools, s.Bools)
		case String:
			d.Ends = appendOffsets(d.Ends, s.Ends, uint32(len(d.Data)))
			d.Data = appendGrow(d.Data, s.Data)
		case StringList:
			d.Items = appendOffsets(d.Items, s.Items, uint32(len(d.Ends)))
			d.Ends = appendOffsets(d.Ends, s.Ends, uint32(len(d.Data)))
			d.Data = appendGrow(d.Data, s.Data)
		}
	}
	b.rows += src.rows
	b.bytes += src.bytes
}

// appendGrow appends, doubling the capacity when it must grow: append's own
// 1.25x growth for large slices copies a 30 MB column several times over.
func appendGrow[T any](dst, src []T) []T {
	if need := len(dst) + len(src); need > cap(dst) {
		grown := make([]T, len(dst), max(need, 2*cap(dst), 1024))
		copy(grown, dst)
		dst = grown
	}
	return append(dst, src...)
}

func appendOffsets(dst, src []uint32, off uint32) []uint32 {
	n := len(dst)
	dst = appendGrow(dst, src)
	for i := n; i < len(dst); i++ {
		dst[i] += off
	}
	return dst
}

// AppendRow appends row r of src (a batch of the same table) to b.
func (b *Batch) AppendRow(src *Batch, r int) {
	for i := range b.cols {
		c := &src.cols[i]
		if !c.Valid[r] {
			continue
		}
		switch c.Kind {
		case String:
			b.SetString(i, c.StringAt(r))
		case Int64, Timestamp:
			b.SetInt64(i, c.Ints[r])
		case Bool:
			b.SetBool(i, c.Bools[r])
		case StringList:
			b.SetList(i, c.ListAt(r))
		}
	}
	b.End()
}
