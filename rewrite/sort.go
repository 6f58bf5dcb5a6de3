package rewrite

import (
	"cmp"
	"container/heap"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"

	"github.com/sgload/sgload/parquetfile"
	"github.com/sgload/sgload/schema"
)

// order is the order rewritten files keep: by timestamp (events; nulls
// last), then _sequence, then _node. Sorted on time, a file's row groups
// and pages cover narrow time ranges, so engines skip what a time filter
// excludes; the rest breaks ties the way the views' dedupe does (earliest
// _sequence kept).
type order struct {
	ts, seq, node int // column indexes; ts is -1 for object tables
}

func orderOf(t *schema.Table) order {
	return order{ts: t.Index("timestamp"), seq: t.MustIndex("_sequence"), node: t.MustIndex("_node")}
}

func (o order) compare(a *schema.Batch, i int, b *schema.Batch, j int) int {
	if o.ts >= 0 {
		ca, cb := a.Column(o.ts), b.Column(o.ts)
		va, vb := ca.Valid[i], cb.Valid[j]
		switch {
		case va && vb:
			if c := cmp.Compare(ca.Ints[i], cb.Ints[j]); c != 0 {
				return c
			}
		case va != vb:
			if va {
				return -1
			}
			return 1
		}
	}
	if c := cmp.Compare(a.Column(o.seq).Ints[i], b.Column(o.seq).Ints[j]); c != 0 {
		return c
	}
	return cmp.Compare(string(a.Column(o.node).StringAt(i)), string(b.Column(o.node).StringAt(j)))
}

// sorter puts the rows of one partition in order with memory bounded by
// budget: rows are gathered until they take budget bytes, sorted, and
// spilled to a local run file; the runs are then merged, fanIn at a time
// (in several passes for a partition of any size).
type sorter struct {
	table  *schema.Table
	order  order
	dir    string
	budget int64
	cur    *schema.Batch
	runs   []string
	nrun   int
}

const (
	fanIn         = 16
	runGroupRows  = 4096 // rows per row group in run files
	mergeReadRows = 1024 // rows each run contributes to memory while merged
)

func newSorter(t *schema.Table, dir string, budget int64) *sorter {
	return &sorter{table: t, order: orderOf(t), dir: dir, budget: budget, cur: schema.NewBatch(t)}
}

// add takes rows from r until it is exhausted.
func (s *sorter) addFrom(r *parquetfile.Reader) error {
	for {
		_, err := r.Read(s.cur, runGroupRows)
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if int64(s.cur.Bytes()) >= s.budget {
			if err := s.spill(); err != nil {
				return err
			}
		}
	}
}

// sorted returns the order of cur's rows.
func (s *sorter) sorted() []int32 {
	perm := make([]int32, s.cur.Len())
	for i := range perm {
		perm[i] = int32(i)
	}
	slices.SortStableFunc(perm, func(a, b int32) int { return s.order.compare(s.cur, int(a), s.cur, int(b)) })
	return perm
}

// spill writes cur, sorted, as a run file.
func (s *sorter) spill() error {
	if s.cur.Len() == 0 {
		return nil
	}
	path := filepath.Join(s.dir, fmt.Sprintf("run-%06d.parquet", s.nrun))
	s.nrun++
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("sort run: %w", err)
	}
	w := parquetfile.NewWriter(f, s.table, parquetfile.Options{})
	out := schema.NewBatch(s.table)
	for _, i := range s.sorted() {
		out.AppendRow(s.cur, int(i))
		if out.Len() == runGroupRows {
			if err := w.WriteRowGroup(out); err != nil {
				f.Close()
				return err
			}
			out.Reset()
		}
	}
	err = w.WriteRowGroup(out)
	if err == nil {
		err = w.Close()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("write sort run %s: %w", path, err)
	}
	s.runs = append(s.runs, path)
	s.cur.Reset()
	return nil
}

// emit calls fn with every row in order.
func (s *sorter) emit(fn func(b *schema.Batch, row int) error) error {
	if len(s.runs) == 0 {
		// Everything fits in memory: no run files at all.
		for _, i := range s.sorted() {
			if err := fn(s.cur, int(i)); err != nil {
				return err
			}
		}
		return nil
	}
	if err := s.spill(); err != nil {
		return err
	}
	// Merge passes until at most fanIn runs remain, then the last merge
	// feeds fn.
	for len(s.runs) > fanIn {
		var next []string
		for i := 0; i < len(s.runs); i += fanIn {
			group := s.runs[i:min(i+fanIn, len(s.runs))]
			path, err := s.mergeToRun(group)
			if err != nil {
				return err
			}
			next = append(next, path)
		}
		s.runs = next
	}
	return s.merge(s.runs, fn)
}

// mergeToRun merges runs into one new run file.
func (s *sorter) mergeToRun(runs []string) (string, error) {
	path := filepath.Join(s.dir, fmt.Sprintf("run-%06d.parquet", s.nrun))
	s.nrun++
	f, err := os.Create(path)
	if err != nil {
		return "", err
	}
	w := parquetfile.NewWriter(f, s.table, parquetfile.Options{})
	out := schema.NewBatch(s.table)
	err = s.merge(runs, func(b *schema.Batch, row int) error {
		out.AppendRow(b, row)
		if out.Len() == runGroupRows {
			if err := w.WriteRowGroup(out); err != nil {
				return err
			}
			out.Reset()
		}
		return nil
	})
	if err == nil {
		err = w.WriteRowGroup(out)
	}
	if err == nil {
		err = w.Close()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return "", fmt.Errorf("merge sort runs: %w", err)
	}
	return path, nil
}

// cursor is a run being merged: a small batch of its rows at a time.
type cursor struct {
	f   *os.File
	r   *parquetfile.Reader
	b   *schema.Batch
	row int
}

func (c *cursor) advance() (bool, error) {
	c.row++
	if c.row < c.b.Len() {
		return true, nil
	}
	c.b.Reset()
	c.row = 0
	_, err := c.r.Read(c.b, mergeReadRows)
	if errors.Is(err, io.EOF) {
		return false, nil
	}
	return err == nil, err
}

type cursorHeap struct {
	o  order
	cs []*cursor
}

func (h *cursorHeap) Len() int { return len(h.cs) }
func (h *cursorHeap) Less(i, j int) bool {
	return h.o.compare(h.cs[i].b, h.cs[i].row, h.cs[j].b, h.cs[j].row) < 0
}
func (h *cursorHeap) Swap(i, j int) { h.cs[i], h.cs[j] = h.cs[j], h.cs[i] }
func (h *cursorHeap) Push(x any)    { h.cs = append(h.cs, x.(*cursor)) }
func (h *cursorHeap) Pop() any {
	c := h.cs[len(h.cs)-1]
	h.cs = h.cs[:len(h.cs)-1]
	return c
}

// merge streams the rows of the sorted runs, in order, to fn, and deletes
// the runs.
func (s *sorter) merge(runs []string, fn func(b *schema.Batch, row int) error) error {
	h := &cursorHeap{o: s.order}
	defer func() {
		for _, c := range h.cs {
			_ = c.f.Close()
		}
		for _, p := range runs {
			_ = os.Remove(p)
		}
	}()
	for _, p := range runs {
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		st, err := f.Stat()
		if err != nil {
			f.Close()
			return err
		}
		r, err := parquetfile.OpenReader(f, st.Size(), s.table)
		if err != nil {
			f.Close()
			return fmt.Errorf("sort run %s: %w", p, err)
		}
		c := &cursor{f: f, r: r, b: schema.NewBatch(s.table), row: -1}
		ok, err := c.advance()
		if err != nil {
			f.Close()
			return err
		}
		if !ok {
			f.Close()
			continue
		}
		h.cs = append(h.cs, c)
	}
	heap.Init(h)
	for h.Len() > 0 {
		c := h.cs[0]
		if err := fn(c.b, c.row); err != nil {
			return err
		}
		ok, err := c.advance()
		if err != nil {
			return err
		}
		if ok {
			heap.Fix(h, 0)
		} else {
			_ = c.f.Close()
			heap.Pop(h)
		}
	}
	return nil
}
