package dedupe

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"

	"github.com/parquet-go/parquet-go/bloom"

	"github.com/sgload/sgload/internal/durable"
)

// A run is an immutable file of history entries, sorted by key, with what
// a lookup needs to touch as little of it as possible:
//
//	"SGDEDUP2"
//	entries   n × (key [16]byte, minute uint32 LE)   sorted by key, keys unique
//	index     the first key of every block of blockEntries entries
//	bloom     a split-block Bloom filter (Parquet's) of the keys, bitsPerKey each
//	footer    n, index offset, bloom offset (uint64 LE), min and max minute
//	          (uint32 LE), "SGDEDUP2"
//
// minute is when the key was committed, in Unix minutes: a key counts as
// seen while it is younger than the window, whatever run holds it, so runs
// can be merged freely.
const (
	runMagic     = "SGDEDUP2"
	entrySize    = 16 + 4
	blockEntries = 256
	bitsPerKey   = 10
	footerSize   = int64(8 + 8 + 8 + 4 + 4 + len(runMagic))
)

// entry is a key (its halves as big-endian integers, so that they compare
// as the bytes do) with its commit minute.
type entry struct {
	ukey
	minute uint32
}

type ukey struct{ hi, lo uint64 }

func (a ukey) less(b ukey) bool { return a.hi < b.hi || a.hi == b.hi && a.lo < b.lo }

// bloomHash is the 64 bits of a key its Bloom filter is given: keys are
// already uniform hashes.
func (a ukey) bloomHash() uint64 { return a.lo }

// runWriter writes a run from entries given in key order. Errors of bw are
// sticky: finish returns the first from Flush, so single writes are not
// checked.
type runWriter struct {
	bw       *bufio.Writer
	n        int64
	index    []ukey
	bloom    bloom.SplitBlockFilter
	hashes   []uint64 // waiting to be inserted in bulk (vectorised, misses overlap)
	min, max uint32
	last     ukey
}

// newRunWriter starts a run of at most capacity entries (which sizes its
// Bloom filter).
func newRunWriter(w io.Writer, capacity int64) *runWriter {
	rw := &runWriter{bw: bufio.NewWriterSize(w, 256<<10), min: ^uint32(0), hashes: make([]uint64, 0, 1024),
		bloom: make(bloom.SplitBlockFilter, bloom.NumSplitBlocksOf(max(capacity, 1), bitsPerKey))}
	rw.bw.WriteString(runMagic)
	return rw
}

func (rw *runWriter) add(e entry) error {
	if rw.n > 0 && !rw.last.less(e.ukey) {
		return fmt.Errorf("dedupe run: keys out of order")
	}
	if rw.n%blockEntries == 0 {
		rw.index = append(rw.index, e.ukey)
	}
	var b [entrySize]byte
	putEntry(b[:], e)
	rw.bw.Write(b[:])
	if rw.hashes = append(rw.hashes, e.bloomHash()); len(rw.hashes) == cap(rw.hashes) {
		rw.bloom.InsertBulk(rw.hashes)
		rw.hashes = rw.hashes[:0]
	}
	rw.min, rw.max = min(rw.min, e.minute), max(rw.max, e.minute)
	rw.last = e.ukey
	rw.n++
	return nil
}

func (rw *runWriter) finish() error {
	rw.bloom.InsertBulk(rw.hashes)
	indexOff := int64(len(runMagic)) + rw.n*entrySize
	var b [16]byte
	for _, k := range rw.index {
		binary.BigEndian.PutUint64(b[:8], k.hi)
		binary.BigEndian.PutUint64(b[8:], k.lo)
		rw.bw.Write(b[:])
	}
	bloomOff := indexOff + int64(len(rw.index))*16
	rw.bw.Write(rw.bloom.Bytes())
	if rw.n == 0 {
		rw.min = 0
	}
	var foot [footerSize]byte
	binary.LittleEndian.PutUint64(foot[0:], uint64(rw.n))
	binary.LittleEndian.PutUint64(foot[8:], uint64(indexOff))
	binary.LittleEndian.PutUint64(foot[16:], uint64(bloomOff))
	binary.LittleEndian.PutUint32(foot[24:], rw.min)
	binary.LittleEndian.PutUint32(foot[28:], rw.max)
	copy(foot[32:], runMagic)
	rw.bw.Write(foot[:])
	return rw.bw.Flush()
}

// writeRun writes the entries produced by next (until it returns false; at
// most capacity) as the run at path, durably.
func writeRun(path string, capacity int64, next func() (entry, bool, error)) (n int64, err error) {
	err = durable.WriteFunc(path, 0o644, func(w io.Writer) error {
		rw := newRunWriter(w, capacity)
		for {
			e, ok, err := next()
			if err != nil {
				return err
			}
			if !ok {
				break
			}
			if err := rw.add(e); err != nil {
				return err
			}
		}
		n = rw.n
		return rw.finish()
	})
	if err != nil {
		return 0, fmt.Errorf("write dedupe run %s: %w", path, err)
	}
	return n, nil
}

func putEntry(b []byte, e entry) {
	binary.BigEndian.PutUint64(b[0:], e.hi)
	binary.BigEndian.PutUint64(b[8:], e.lo)
	binary.LittleEndian.PutUint32(b[16:], e.minute)
}

func getEntry(b []byte) entry {
	return entry{ukey: ukey{hi: binary.BigEndian.Uint64(b[0:]), lo: binary.BigEndian.Uint64(b[8:])},
		minute: binary.LittleEndian.Uint32(b[16:])}
}

// run is an open run: its footer and block index in memory.
type run struct {
	path       string
	name       string
	n          int64
	indexOff   int64
	bloomOff   int64
	min, max   uint32
	index      []ukey
	bloomBytes int64
}

var errNotRun = errors.New("not a dedupe run")

// readFooter reads a run's footer: its key count, offsets and minutes.
func readFooter(f *os.File, size int64, path, name string) (*run, error) {
	if size < int64(len(runMagic))+footerSize {
		return nil, fmt.Errorf("dedupe run %s: %w", path, errNotRun)
	}
	var foot [footerSize]byte
	if _, err := f.ReadAt(foot[:], size-footerSize); err != nil {
		return nil, fmt.Errorf("read dedupe run %s: %w", path, err)
	}
	if string(foot[32:]) != runMagic {
		return nil, fmt.Errorf("dedupe run %s: %w", path, errNotRun)
	}
	r := &run{path: path, name: name,
		n:        int64(binary.LittleEndian.Uint64(foot[0:])),
		indexOff: int64(binary.LittleEndian.Uint64(foot[8:])),
		bloomOff: int64(binary.LittleEndian.Uint64(foot[16:])),
		min:      binary.LittleEndian.Uint32(foot[24:]),
		max:      binary.LittleEndian.Uint32(foot[28:]),
	}
	r.bloomBytes = size - footerSize - r.bloomOff
	return r, nil
}

func openRun(path, name string) (*run, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	r, err := readFooter(f, st.Size(), path, name)
	if err != nil {
		return nil, err
	}
	nIndex := (r.n + blockEntries - 1) / blockEntries
	if r.indexOff != int64(len(runMagic))+r.n*entrySize || r.bloomOff != r.indexOff+nIndex*16 || r.bloomBytes < 0 || r.bloomBytes%32 != 0 {
		return nil, fmt.Errorf("dedupe run %s: damaged footer", path)
	}
	buf := make([]byte, nIndex*16)
	if _, err := f.ReadAt(buf, r.indexOff); err != nil {
		return nil, fmt.Errorf("read dedupe run %s: %w", path, err)
	}
	r.index = make([]ukey, nIndex)
	for i := range r.index {
		r.index[i] = ukey{hi: binary.BigEndian.Uint64(buf[i*16:]), lo: binary.BigEndian.Uint64(buf[i*16+8:])}
	}
	return r, nil
}

func (r *run) loadBloom() (bloom.SplitBlockFilter, error) {
	f, err := os.Open(r.path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	buf := make([]byte, r.bloomBytes)
	if _, err := f.ReadAt(buf, r.bloomOff); err != nil {
		return nil, fmt.Errorf("read dedupe run %s: %w", r.path, err)
	}
	return bloom.MakeSplitBlockFilter(buf), nil
}

// scan streams the run's entries in key order, decoding from a buffer of
// many entries at a time.
type scan struct {
	f    *os.File
	buf  []byte
	pos  int
	off  int64 // next read
	left int64 // entries not yet read into buf
	cur  entry
}

func (r *run) scan() (*scan, error) {
	f, err := os.Open(r.path)
	if err != nil {
		return nil, err
	}
	return &scan{f: f, off: int64(len(runMagic)), left: r.n}, nil
}

const scanEntries = 8192

// next moves to the next entry; false at the end.
func (s *scan) next() (bool, error) {
	if s.pos == len(s.buf) {
		if s.left == 0 {
			return false, nil
		}
		n := min(s.left, scanEntries)
		if s.buf == nil {
			s.buf = make([]byte, scanEntries*entrySize)
		}
		s.buf = s.buf[:n*entrySize]
		if _, err := s.f.ReadAt(s.buf, s.off); err != nil {
			return false, fmt.Errorf("read dedupe run %s: %w", s.f.Name(), err)
		}
		s.off += n * entrySize
		s.left -= n
		s.pos = 0
	}
	s.cur = getEntry(s.buf[s.pos:])
	s.pos += entrySize
	return true, nil
}

func (s *scan) close() { _ = s.f.Close() }

// lookup finds the sorted keys in the run through its block index, reading
// each block that may hold one once, and calls hit with the position in
// keys and the entry's minute of every key found.
func (r *run) lookup(keys []ukey, hit func(i int, minute uint32)) error {
	if len(keys) == 0 || r.n == 0 {
		return nil
	}
	f, err := os.Open(r.path)
	if err != nil {
		return err
	}
	defer f.Close()
	buf := make([]byte, blockEntries*entrySize)
	for i := 0; i < len(keys); {
		// The block whose first key is the last one <= keys[i].
		b := sort.Search(len(r.index), func(j int) bool { return keys[i].less(r.index[j]) }) - 1
		if b < 0 {
			i++
			continue
		}
		first := int64(b) * blockEntries
		cnt := int(min(blockEntries, r.n-first))
		blk := buf[:cnt*entrySize]
		if _, err := f.ReadAt(blk, int64(len(runMagic))+first*entrySize); err != nil {
			return fmt.Errorf("read dedupe run %s: %w", r.path, err)
		}
		// Every key before the next block's first key is in this block.
		last := b+1 == len(r.index)
		for ; i < len(keys) && (last || keys[i].less(r.index[b+1])); i++ {
			j := sort.Search(cnt, func(j int) bool { return !getEntry(blk[j*entrySize:]).less(keys[i]) })
			if j < cnt {
				if e := getEntry(blk[j*entrySize:]); e.ukey == keys[i] {
					hit(i, e.minute)
				}
			}
		}
	}
	return nil
}
