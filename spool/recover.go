package spool

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/sgload/sgload/internal/durable"
)

// recoverOpen seals every .open segment left by a process that did not shut
// down cleanly, and raises the sequencer (and its stored high-water mark)
// above the highest sequence found in them.
//
// Only the tail after the last intact record is cut: a crash can tear the
// final write, which was never acknowledged (its fsync had not returned). The
// cut bytes are kept in quarantine/ anyway, for forensics. Damaged lines with
// intact records after them stay in place; readers report and skip them.
func (s *Writer) recoverOpen() error {
	opens, err := ListSegments(s.dir.Events(), OpenSuffix)
	if err != nil {
		return err
	}
	var last int64
	for _, seg := range opens {
		end, seq, n, err := scanIntact(seg.Path)
		if err != nil {
			return fmt.Errorf("recover %s: %w", seg.Path, err)
		}
		last = max(last, seq)
		if end < seg.Size {
			if err := s.cutTail(seg, end); err != nil {
				return err
			}
		}
		if n == 0 {
			if err := os.Remove(seg.Path); err != nil {
				return fmt.Errorf("remove empty %s: %w", seg.Path, err)
			}
			if err := durable.SyncDir(s.dir.Events()); err != nil {
				return err
			}
			s.log.Info("removed empty segment left open", "segment", seg.Name())
			continue
		}
		sealed := strings.TrimSuffix(seg.Path, OpenSuffix) + SealedSuffix
		if err := durable.Rename(seg.Path, sealed); err != nil {
			return fmt.Errorf("seal recovered %s: %w", seg.Path, err)
		}
		s.log.Warn("recovered segment left open by an unclean stop",
			"segment", filepath.Base(sealed), "records", n, "bytes", end, "cut_bytes", seg.Size-end)
	}
	if last > s.seq.Last() {
		s.seq.Above(last)
		return s.seq.Save()
	}
	return nil
}

// scanIntact reads a segment and returns the end offset of its last intact
// record, the last sequence in it, and the number of intact records.
func scanIntact(path string) (end, lastSeq int64, n int, err error) {
	r, err := OpenReader(path)
	if err != nil {
		return 0, 0, 0, err
	}
	defer r.Close()
	for {
		rec, err := r.Next()
		if err == io.EOF {
			return end, lastSeq, n, nil
		}
		if errors.Is(err, ErrCorrupt) {
			continue
		}
		if err != nil {
			return 0, 0, 0, err
		}
		end, n = r.Offset(), n+1
		lastSeq = max(lastSeq, rec.LastSequence())
	}
}

func (s *Writer) cutTail(seg Segment, end int64) error {
	f, err := os.OpenFile(seg.Path, os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("open %s: %w", seg.Path, err)
	}
	defer f.Close()
	tail := make([]byte, seg.Size-end)
	if _, err := f.ReadAt(tail, end); err != nil && err != io.EOF {
		return fmt.Errorf("read torn tail of %s: %w", seg.Path, err)
	}
	qname := fmt.Sprintf("torn-%s-%d.bin", seg.Name(), end)
	if err := durable.WriteFile(filepath.Join(s.dir.Quarantine(), qname), tail, 0o600); err != nil {
		return err
	}
	if err := f.Truncate(end); err != nil {
		return fmt.Errorf("cut torn tail of %s: %w", seg.Path, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("fsync %s: %w", seg.Path, err)
	}
	s.log.Warn("cut torn tail of a segment (never acknowledged); bytes kept in quarantine",
		"segment", seg.Name(), "offset", end, "bytes", len(tail), "quarantine", qname)
	return nil
}
