package loader

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"

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
// whatever the number of partitions. A partition's blocks in one worker's
// file hold its entries in the order the worker read them, which is the
// order of their ordinals; pass 2 merges the workers' streams by ordinal,
// so rows come out in the order they were received, whatever the
// scheduling.

const (
	spillBlockBytes = 256 << 10
	spillBudget     = 8 << 20
)

// spillEntry is one row's input: an event or an object, and what its row
// needs besides the JSON.
type spillEntry struct {
	ordinal int64 // the event's position in the plan (the dedupe result's index)
	seq     int64 // _sequence
	recv    int64 // Unix µs: _received_at (events), _synced_at (objects)
	node    []byte
	extra   []byte // events: _source ("" = webhook); objects: the sync id
	raw     []byte
}

// blockRef is where one block of a partition's entries is in a spill file.
type blockRef struct {
	off int64
	len int
}

// spillWriter is one pass-1 worker's spill file.
type spillWriter struct {
	path   string
	f      *os.File
	off    int64
	bufs   map[layout.Partition][]byte
	held   int
	blocks map[layout.Partition][]blockRef
	rows   map[layout.Partition]int64
	raw    map[layout.Partition]int64 // bytes of JSON, for progress and scheduling
}

func newSpillWriter(dir string, worker int) (*spillWriter, error) {
	path := filepath.Join(dir, fmt.Sprintf("spill-%03d", worker))
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("spill file: %w", err)
	}
	return &spillWriter{path: path, f: f, bufs: map[layout.Partition][]byte{},
		blocks: map[layout.Partition][]blockRef{}, rows: map[layout.Partition]int64{}, raw: map[layout.Partition]int64{}}, nil
}

// add appends e to partition k.
func (s *spillWriter) add(k layout.Partition, e *spillEntry) error {
	b := s.bufs[k]
	before := len(b)
	b = binary.AppendUvarint(b, uint64(e.ordinal))
	b = binary.AppendVarint(b, e.seq)
	b = binary.AppendVarint(b, e.recv)
	b = appendBytes(b, e.node)
	b = appendBytes(b, e.extra)
	b = appendBytes(b, e.raw)
	s.bufs[k] = b
	s.held += len(b) - before
	s.rows[k]++
	s.raw[k] += int64(len(e.raw))
	if len(b) >= spillBlockBytes {
		return s.writeBlock(k)
	}
	for s.held >= spillBudget {
		var largest layout.Partition
		most := -1
		for p, buf := range s.bufs {
			if len(buf) > most || (len(buf) == most && p.Less(largest)) {
				largest, most = p, len(buf)
			}
		}
		if err := s.writeBlock(largest); err != nil {
			return err
		}
	}
	return nil
}

func appendBytes(dst, b []byte) []byte {
	return append(binary.AppendUvarint(dst, uint64(len(b))), b...)
}

func (s *spillWriter) writeBlock(k layout.Partition) error {
	b := s.bufs[k]
	if len(b) == 0 {
		return nil
	}
	if _, err := s.f.Write(b); err != nil {
		return fmt.Errorf("write %s: %w", s.path, err)
	}
	s.blocks[k] = append(s.blocks[k], blockRef{off: s.off, len: len(b)})
	s.off += int64(len(b))
	s.held -= len(b)
	if cap(b) > 2*spillBlockBytes {
		b = nil // one large event's buffer is not kept for small ones
	}
	s.bufs[k] = b[:0]
	return nil
}

// finish writes every buffer out. The file stays open for pass 2.
func (s *spillWriter) finish() error {
	for k := range s.bufs {
		if err := s.writeBlock(k); err != nil {
			return err
		}
	}
	s.bufs = nil
	return nil
}

// spillStream reads one worker's entries of one partition, block by block.
type spillStream struct {
	f      *os.File
	blocks []blockRef
	buf    []byte
	rest   []byte
	cur    spillEntry
}

// next reads the next entry into s.cur; false at the end. The entry's
// slices are valid until the following call.
func (s *spillStream) next() (bool, error) {
	for len(s.rest) == 0 {
		if len(s.blocks) == 0 {
			return false, nil
		}
		b := s.blocks[0]
		s.blocks = s.blocks[1:]
		if cap(s.buf) < b.len {
			s.buf = make([]byte, b.len)
		}
		s.buf = s.buf[:b.len]
		if _, err := s.f.ReadAt(s.buf, b.off); err != nil {
			return false, fmt.Errorf("read %s: %w", s.f.Name(), err)
		}
		s.rest = s.buf
	}
	var err error
	e := &s.cur
	var u uint64
	if u, err = s.uvarint(); err == nil {
		e.ordinal = int64(u)
		if e.seq, err = s.varint(); err == nil {
			if e.recv, err = s.varint(); err == nil {
				if e.node, err = s.bytes(); err == nil {
					if e.extra, err = s.bytes(); err == nil {
						e.raw, err = s.bytes()
					}
				}
			}
		}
	}
	if err != nil {
		return false, fmt.Errorf("read %s: %w", s.f.Name(), err)
	}
	return true, nil
}

var errSpillTorn = errors.New("spill entry cut short")

func (s *spillStream) uvarint() (uint64, error) {
	v, n := binary.Uvarint(s.rest)
	if n <= 0 {
		return 0, errSpillTorn
	}
	s.rest = s.rest[n:]
	return v, nil
}

func (s *spillStream) varint() (int64, error) {
	v, n := binary.Varint(s.rest)
	if n <= 0 {
		return 0, errSpillTorn
	}
	s.rest = s.rest[n:]
	return v, nil
}

func (s *spillStream) bytes() ([]byte, error) {
	n, err := s.uvarint()
	if err != nil || n > uint64(len(s.rest)) {
		return nil, errSpillTorn
	}
	b := s.rest[:n:n]
	s.rest = s.rest[n:]
	return b, nil
}

// spillMerge yields a partition's entries from every worker in ordinal
// order.
type spillMerge struct {
	streams []*spillStream
	live    []bool
	last    int // the stream whose entry next returned last, -1 before the first
}

func newSpillMerge(writers []*spillWriter, k layout.Partition) (*spillMerge, error) {
	m := &spillMerge{last: -1}
	for _, w := range writers {
		if len(w.blocks[k]) == 0 {
			continue
		}
		s := &spillStream{f: w.f, blocks: w.blocks[k]}
		ok, err := s.next()
		if err != nil {
			return nil, err
		}
		m.streams = append(m.streams, s)
		m.live = append(m.live, ok)
	}
	return m, nil
}

// next returns the entry with the smallest ordinal, nil after the last; it
// is valid until the following call.
func (m *spillMerge) next() (*spillEntry, error) {
	if m.last >= 0 {
		ok, err := m.streams[m.last].next()
		if err != nil {
			return nil, err
		}
		m.live[m.last] = ok
	}
	m.last = -1
	for i, s := range m.streams {
		if m.live[i] && (m.last < 0 || s.cur.ordinal < m.streams[m.last].cur.ordinal) {
			m.last = i
		}
	}
	if m.last < 0 {
		return nil, nil
	}
	return &m.streams[m.last].cur, nil
}
