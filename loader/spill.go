package loader

import (
	"bufio"
	"bytes"
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"

	"github.com/sgload/sgload/layout"
)

// Pass 1 sorts a plan's rows by partition into the plan's work folder, so
// that pass 2 writes each partition in one go: large row groups, one
// Parquet file open per goroutine, whatever the number of partitions.
//
// Each pass-1 worker has one spill file. It gathers each partition's
// entries in a buffer of its own and appends the buffer to the file as a
// block when it reaches spillBlockBytes, or, when all its buffers together
// reach spillBudget, the largest; so memory and open files stay bounded
// whatever the number of partitions.
//
// Within a partition, rows are written in entry order: by email, events
// without one (missing, null, empty or not a string: EventKey.Email) last,
// then by ordinal (the order they were received).
// Objects have no email, so they keep the order they were received in.
// One person's events side by side (a message's processed, delivered,
// opens and clicks, and their other messages) share the address, the
// message ids and the custom args, which zstd then finds within a page:
// the benchmark's files are 8 % smaller for it (sorting by time gained
// 0.4 %; BENCHMARKS.md). Row groups then hold ranges of addresses, so their
// min and max let a lookup or an erasure by address skip the rest.
//
// It is an external sort: each block is sorted before it is written (a
// sorted run), and pass 2 merges the runs of a partition, reading each a
// spillReadBytes window at a time, at most spillFanIn at once, so pass 2
// holds windows, not the partition. The order depends on the data alone,
// never on scheduling.

const (
	spillBlockBytes = 1 << 20
	spillBudget     = 8 << 20
	spillReadBytes  = 32 << 10
)

// spillFanIn is how many runs pass 2 merges at once. A partition with more
// (many partitions in one plan make the budget write short blocks) is first
// merged spillFanIn runs at a time into longer runs in a file of their own,
// so memory stays spillFanIn windows (8 MiB) whatever the number of runs.
// A variable for the tests.
var spillFanIn = 256

// spillEntry is one row's input: an event or an object, and what its row
// needs besides the JSON.
type spillEntry struct {
	ordinal int64 // the event's position in the plan (the dedupe result's index)
	seq     int64 // _sequence
	recv    int64 // Unix µs: _received_at (events), _synced_at (objects)
	node    []byte
	extra   []byte // events: _source ("" = webhook); objects: the sync id
	email   []byte // events: EventKey.Email, the sort key; objects: none
	raw     []byte
}

// rowOrder orders rows by email, those without one last, then by ordinal.
// The emails' first sixteen bytes (emailPrefix) decide most comparisons
// without a call to bytes.Compare (eight did not: many addresses begin
// with the same first name): comparing is most of what sorting costs.
func rowOrder(aPrefix, bPrefix prefix, aEmail, bEmail []byte, aOrdinal, bOrdinal int64) int {
	if (len(aEmail) == 0) != (len(bEmail) == 0) {
		if len(aEmail) == 0 {
			return 1
		}
		return -1
	}
	if aPrefix != bPrefix {
		if aPrefix.hi != bPrefix.hi {
			return cmp.Compare(aPrefix.hi, bPrefix.hi)
		}
		return cmp.Compare(aPrefix.lo, bPrefix.lo)
	}
	if len(aEmail) > 16 || len(bEmail) > 16 {
		if c := bytes.Compare(aEmail, bEmail); c != 0 {
			return c
		}
	} else if c := cmp.Compare(len(aEmail), len(bEmail)); c != 0 {
		return c // equal prefixes: the shorter (padded with zeros) first
	}
	return cmp.Compare(aOrdinal, bOrdinal)
}

// prefix is an email's first sixteen bytes, big-endian, zero-padded: for
// two emails a < b, emailPrefix(a) <= emailPrefix(b).
type prefix struct{ hi, lo uint64 }

func emailPrefix(e []byte) prefix {
	var p [16]byte
	copy(p[:], e)
	return prefix{binary.BigEndian.Uint64(p[:8]), binary.BigEndian.Uint64(p[8:])}
}

// appendEntry appends e to b and returns where in the result e's email is.
func appendEntry(b []byte, e *spillEntry) ([]byte, int) {
	b = binary.AppendUvarint(b, uint64(e.ordinal))
	b = binary.AppendVarint(b, e.seq)
	b = binary.AppendVarint(b, e.recv)
	b = appendBytes(b, e.node)
	b = appendBytes(b, e.extra)
	b = appendBytes(b, e.email)
	email := len(b) - len(e.email)
	return appendBytes(b, e.raw), email
}

func appendBytes(dst, b []byte) []byte {
	return append(binary.AppendUvarint(dst, uint64(len(b))), b...)
}

var errSpillTorn = errors.New("spill entry cut short")

// decodeEntry reads the entry at the start of b into e (its slices point
// into b) and returns its length; errSpillTorn when b ends inside it.
func decodeEntry(b []byte, e *spillEntry) (int, error) {
	d := decoder{rest: b}
	e.ordinal = int64(d.uvarint())
	e.seq = d.varint()
	e.recv = d.varint()
	e.node = d.bytes()
	e.extra = d.bytes()
	e.email = d.bytes()
	e.raw = d.bytes()
	if d.torn {
		return 0, errSpillTorn
	}
	return len(b) - len(d.rest), nil
}

// decoder reads varints and byte strings until the first one cut short.
type decoder struct {
	rest []byte
	torn bool
}

func (d *decoder) uvarint() uint64 {
	v, n := binary.Uvarint(d.rest)
	if n <= 0 {
		d.torn = true
		return 0
	}
	d.rest = d.rest[n:]
	return v
}

// varint undoes binary.AppendVarint's zigzag encoding.
func (d *decoder) varint() int64 {
	u := d.uvarint()
	return int64(u>>1) ^ -int64(u&1)
}

func (d *decoder) bytes() []byte {
	n := d.uvarint()
	if d.torn || n > uint64(len(d.rest)) {
		d.torn = true
		return nil
	}
	b := d.rest[:n:n]
	d.rest = d.rest[n:]
	return b
}

// spillWriter is one pass-1 worker's spill file.
type spillWriter struct {
	path   string
	f      *os.File
	off    int64
	bufs   map[layout.Partition]*spillBuf
	held   int
	blocks map[layout.Partition][]runRef // each block a sorted run
	raw    map[layout.Partition]int64    // bytes of JSON, for progress and scheduling
	sorted []byte                        // reused to sort a block
}

// spillBuf is a partition's block being gathered: its entries, and where
// each is with its sort key, so that sorting it decodes nothing.
type spillBuf struct {
	b    []byte
	keys []bufKey
}

// bufKeyBytes is what a bufKey adds to a buffer's memory.
const bufKeyBytes = 40

// bufKey is one entry of a spillBuf: b[off:end], its email b[email:email+n].
// It is small because sorting moves it; a block holds spillBlockBytes and
// at most one event more, so 32-bit offsets do.
type bufKey struct {
	prefix             prefix
	ordinal            int64
	off, end, email, n uint32
}

func newSpillWriter(dir string, worker int) (*spillWriter, error) {
	path := filepath.Join(dir, fmt.Sprintf("spill-%03d", worker))
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("spill file: %w", err)
	}
	return &spillWriter{path: path, f: f, bufs: map[layout.Partition]*spillBuf{},
		blocks: map[layout.Partition][]runRef{}, raw: map[layout.Partition]int64{}}, nil
}

// add appends e to partition k.
func (s *spillWriter) add(k layout.Partition, e *spillEntry) error {
	sb := s.bufs[k]
	if sb == nil {
		sb = &spillBuf{}
		s.bufs[k] = sb
	}
	before := len(sb.b)
	var email int
	sb.b, email = appendEntry(sb.b, e)
	sb.keys = append(sb.keys, bufKey{prefix: emailPrefix(e.email), ordinal: e.ordinal,
		off: uint32(before), end: uint32(len(sb.b)), email: uint32(email), n: uint32(len(e.email))})
	s.held += len(sb.b) - before + bufKeyBytes
	s.raw[k] += int64(len(e.raw))
	if len(sb.b) >= spillBlockBytes {
		return s.writeBlock(k)
	}
	for s.held >= spillBudget {
		var largest layout.Partition
		most := -1
		for p, buf := range s.bufs {
			if len(buf.b) > most || (len(buf.b) == most && p.Less(largest)) {
				largest, most = p, len(buf.b)
			}
		}
		if err := s.writeBlock(largest); err != nil {
			return err
		}
	}
	return nil
}

// sortedBlock returns sb's entries in rowOrder.
func (s *spillWriter) sortedBlock(sb *spillBuf) []byte {
	order := func(a, b bufKey) int {
		return rowOrder(a.prefix, b.prefix, sb.b[a.email:a.email+a.n], sb.b[b.email:b.email+b.n], a.ordinal, b.ordinal)
	}
	if slices.IsSortedFunc(sb.keys, order) {
		return sb.b
	}
	slices.SortFunc(sb.keys, order)
	out := s.sorted[:0]
	for _, k := range sb.keys {
		out = append(out, sb.b[k.off:k.end]...)
	}
	s.sorted = out
	return out
}

func (s *spillWriter) writeBlock(k layout.Partition) error {
	sb := s.bufs[k]
	if len(sb.b) == 0 {
		return nil
	}
	if _, err := s.f.Write(s.sortedBlock(sb)); err != nil {
		return fmt.Errorf("write %s: %w", s.path, err)
	}
	n := len(sb.b)
	s.blocks[k] = append(s.blocks[k], runRef{f: s.f, off: s.off, end: s.off + int64(n)})
	s.off += int64(n)
	s.held -= n + len(sb.keys)*bufKeyBytes
	if cap(sb.b) > 2*spillBlockBytes {
		sb.b = nil // one large event's buffer is not kept for small ones
	}
	sb.b, sb.keys = sb.b[:0], sb.keys[:0]
	if cap(s.sorted) > 2*spillBlockBytes {
		s.sorted = nil
	}
	return nil
}

// finish writes every buffer out. The file stays open for pass 2.
func (s *spillWriter) finish() error {
	for k := range s.bufs {
		if err := s.writeBlock(k); err != nil {
			return err
		}
	}
	s.bufs, s.sorted = nil, nil
	return nil
}

// spillStream reads one block's entries, a window at a time.
type spillStream struct {
	f        *os.File
	off, end int64 // what is left of the block in the file
	buf      []byte
	rest     []byte // read, not yet decoded
	cur      spillEntry
	prefix   prefix // emailPrefix(cur.email)
}

// next reads the next entry into s.cur; false at the end of the block. The
// entry's slices are valid until the following call.
func (s *spillStream) next() (bool, error) {
	for {
		if len(s.rest) > 0 {
			n, err := decodeEntry(s.rest, &s.cur)
			if err == nil {
				s.rest = s.rest[n:]
				s.prefix = emailPrefix(s.cur.email)
				return true, nil
			}
			if s.off == s.end {
				return false, fmt.Errorf("read %s: %w", s.f.Name(), err)
			}
		} else if s.off == s.end {
			return false, nil
		}
		if err := s.fill(); err != nil {
			return false, err
		}
	}
}

// fill keeps the undecoded bytes and reads the block's next window after
// them; the window grows to hold an entry larger than it.
func (s *spillStream) fill() error {
	kept := len(s.rest)
	size := spillReadBytes
	if kept >= size/2 {
		size = 2 * kept
	}
	size = int(min(int64(size), int64(kept)+s.end-s.off)) // no more than what is left of the run
	if cap(s.buf) < size {
		s.buf = make([]byte, size)
	}
	s.buf = s.buf[:cap(s.buf)]
	copy(s.buf, s.rest)
	n := int(min(int64(len(s.buf)-kept), s.end-s.off))
	if _, err := s.f.ReadAt(s.buf[kept:kept+n], s.off); err != nil {
		return fmt.Errorf("read %s: %w", s.f.Name(), err)
	}
	s.off += int64(n)
	s.rest = s.buf[:kept+n]
	return nil
}

// spillMerge yields a partition's entries from every run in rowOrder,
// through a tree of losers: one comparison per level for each entry, where
// a binary heap makes two.
type spillMerge struct {
	runs []*spillStream
	done []bool // the run is exhausted
	// tree[0] is the run whose entry comes next; tree[1:] the loser of each
	// match, run i's leaf being node len(runs)+i.
	tree  []int
	begun bool
	files []*os.File // longer runs merged from the spills' (mergePass)
}

// runRef is where a sorted run is.
type runRef struct {
	f        *os.File
	off, end int64
}

// newSpillMerge merges partition k's runs from every writer; merge passes
// write their files into dir. Close removes them.
func newSpillMerge(dir string, writers []*spillWriter, k layout.Partition) (*spillMerge, error) {
	var runs []runRef
	for _, w := range writers {
		runs = append(runs, w.blocks[k]...)
	}
	m := &spillMerge{}
	for len(runs) > spillFanIn {
		var err error
		if runs, err = m.mergePass(dir, runs); err != nil {
			m.close()
			return nil, err
		}
	}
	if err := m.open(runs); err != nil {
		m.close()
		return nil, err
	}
	return m, nil
}

// open starts merging runs.
func (m *spillMerge) open(runs []runRef) error {
	for _, r := range runs {
		s := &spillStream{f: r.f, off: r.off, end: r.end}
		ok, err := s.next()
		if err != nil {
			return err
		}
		if ok {
			m.runs = append(m.runs, s)
		}
	}
	m.done = make([]bool, len(m.runs))
	if len(m.runs) > 0 {
		m.tree = make([]int, len(m.runs))
		m.tree[0] = m.build(1)
	}
	return nil
}

// mergePass merges runs spillFanIn at a time into fewer, longer runs, in a
// new file of dir.
func (m *spillMerge) mergePass(dir string, runs []runRef) ([]runRef, error) {
	f, err := os.CreateTemp(dir, "merge-")
	if err != nil {
		return nil, fmt.Errorf("spill merge: %w", err)
	}
	m.files = append(m.files, f)
	w := bufio.NewWriterSize(f, spillReadBytes)
	var out []runRef
	var off int64
	var buf []byte
	for i := 0; i < len(runs); i += spillFanIn {
		group := &spillMerge{}
		if err := group.open(runs[i:min(i+spillFanIn, len(runs))]); err != nil {
			return nil, err
		}
		start := off
		for {
			e, err := group.next()
			if err != nil {
				return nil, err
			}
			if e == nil {
				break
			}
			buf, _ = appendEntry(buf[:0], e)
			if _, err := w.Write(buf); err != nil {
				return nil, fmt.Errorf("write %s: %w", f.Name(), err)
			}
			off += int64(len(buf))
		}
		out = append(out, runRef{f: f, off: start, end: off})
	}
	if err := w.Flush(); err != nil {
		return nil, fmt.Errorf("write %s: %w", f.Name(), err)
	}
	return out, nil
}

// close removes the merge passes' files.
func (m *spillMerge) close() {
	for _, f := range m.files {
		f.Close()
		os.Remove(f.Name())
	}
	m.files = nil
}

// build plays the matches below node and returns their winner.
func (m *spillMerge) build(node int) int {
	if node >= len(m.runs) {
		return node - len(m.runs)
	}
	a, b := m.build(2*node), m.build(2*node+1)
	if m.beats(b, a) {
		a, b = b, a
	}
	m.tree[node] = b
	return a
}

// beats reports whether run a's entry comes before run b's.
func (m *spillMerge) beats(a, b int) bool {
	if m.done[a] || m.done[b] {
		return !m.done[a]
	}
	x, y := m.runs[a], m.runs[b]
	return rowOrder(x.prefix, y.prefix, x.cur.email, y.cur.email, x.cur.ordinal, y.cur.ordinal) < 0
}

// next returns the first entry left in rowOrder, nil after the last; it
// is valid until the following call.
func (m *spillMerge) next() (*spillEntry, error) {
	if len(m.runs) == 0 {
		return nil, nil
	}
	w := m.tree[0]
	if m.begun {
		ok, err := m.runs[w].next()
		if err != nil {
			return nil, err
		}
		m.done[w] = !ok
		for node := (w + len(m.runs)) / 2; node >= 1; node /= 2 {
			if m.beats(m.tree[node], w) {
				m.tree[node], w = w, m.tree[node]
			}
		}
		m.tree[0] = w
	}
	m.begun = true
	if m.done[w] {
		return nil, nil
	}
	return &m.runs[w].cur, nil
}
