package spool

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
)

// Reader reads the records of one segment file in order.
type Reader struct {
	path string
	f    *os.File
	br   *bufio.Reader
	line []byte
	off  int64 // offset of the next line

	// Alloc, when set, provides the buffer for each record's body (at least
	// n bytes), so a reader of millions of records can recycle bodies.
	Alloc func(n int) []byte
}

// OpenReader opens a segment for reading.
func OpenReader(path string) (*Reader, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open segment: %w", err)
	}
	return &Reader{path: path, f: f, br: bufio.NewReaderSize(f, 1<<20)}, nil
}

// Close closes the file.
func (r *Reader) Close() error { return r.f.Close() }

// Offset is where the next record starts; after an error it is past the bad line.
func (r *Reader) Offset() int64 { return r.off }

// CorruptError describes a line that is not an intact record.
type CorruptError struct {
	Path   string
	Offset int64
	Line   []byte // the damaged bytes, for quarantine
	Err    error
	// Torn means a last line without its newline: in a sealed segment, a
	// write cut short by a crash; in an open one, possibly a write still
	// under way.
	Torn bool
}

func (e *CorruptError) Error() string {
	return fmt.Sprintf("%s at byte %d: %v", e.Path, e.Offset, e.Err)
}

func (e *CorruptError) Unwrap() error { return e.Err }

// Next returns the next record, or io.EOF after the last one. A damaged or
// torn line yields a *CorruptError (errors.Is(err, ErrCorrupt)) and reading
// can go on after it; any other error is final.
func (r *Reader) Next() (*Record, error) {
	start := r.off
	line, err := r.readLine()
	if err == io.EOF && len(line) == 0 {
		return nil, io.EOF
	}
	r.off += int64(len(line))
	if err != nil && err != io.EOF {
		return nil, fmt.Errorf("read %s at byte %d: %w", r.path, start, err)
	}
	if err == io.EOF { // a last line without its newline was never acknowledged
		return nil, &CorruptError{Path: r.path, Offset: start, Line: line, Torn: true,
			Err: fmt.Errorf("%w: torn line of %d bytes at end of file", ErrCorrupt, len(line))}
	}
	rec, perr := parseRecord(line, r.Alloc)
	if perr != nil {
		return nil, &CorruptError{Path: r.path, Offset: start, Line: line, Err: perr}
	}
	return rec, nil
}

// readLine returns the next line including its newline; the slice is valid
// until the next call.
func (r *Reader) readLine() ([]byte, error) {
	r.line = r.line[:0]
	for {
		chunk, err := r.br.ReadSlice('\n')
		r.line = append(r.line, chunk...)
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		return r.line, err
	}
}

// SeekRecord moves to byte offset off, which must be the start of a record.
func (r *Reader) SeekRecord(off int64) error {
	if off == 0 {
		return nil
	}
	if _, err := r.f.Seek(off, io.SeekStart); err != nil {
		return fmt.Errorf("seek %s: %w", r.path, err)
	}
	r.br.Reset(r.f)
	r.off = off
	return nil
}

// Count reads the segment at path and returns how many intact records and
// events it holds; damaged lines are skipped, as every reader skips them.
func Count(path string) (records, events int64, err error) {
	r, err := OpenReader(path)
	if err != nil {
		return 0, 0, err
	}
	defer r.Close()
	for {
		rec, err := r.Next()
		if err == io.EOF {
			return records, events, nil
		}
		if errors.Is(err, ErrCorrupt) {
			continue
		}
		if err != nil {
			return records, events, err
		}
		records++
		events += int64(rec.Events)
	}
}
