package loader

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"

	"github.com/sgload/sgload/layout"
	"github.com/sgload/sgload/spool"
)

// item is one record of a plan, in order, with the ordinal of its first
// event. Both passes read a plan through readPlan, so ordinals agree.
type item struct {
	seq     int // position in the plan
	seg     int // index of the segment in the plan
	rec     *spool.Record
	base    int
	corrupt *spool.CorruptError
}

// bodies recycles record bodies between readPlan and the goroutines that
// consume the records: each pass reads hundreds of megabytes of bodies, and
// allocating each anew keeps the garbage collector busy.
type bodies chan []byte

func newBodies() bodies { return make(bodies, 8) }

func (b bodies) get(n int) []byte {
	select {
	case buf := <-b:
		if cap(buf) >= n {
			return buf[:n]
		}
	default:
	}
	return make([]byte, n, n+n/4)
}

// put returns a record's body once nothing refers to it any more.
func (b bodies) put(rec *spool.Record) {
	if rec == nil {
		return
	}
	select {
	case b <- rec.Body[:0]:
	default:
	}
}

// readPlan sends every record of p's segments, in order, to fn.
func readPlan(ctx context.Context, root string, p *Plan, bufs bodies, fn func(item) error) error {
	if p.Replay { // a replay reads committed segments where they are kept
		root = filepath.Join(root, spool.DoneDir)
	}
	seq, base := 0, 0
	for si, s := range p.Segments {
		path := filepath.Join(root, s.Path)
		r, err := spool.OpenReader(path)
		if err != nil {
			return fmt.Errorf("plan %s: %w", p.ID, err)
		}
		if bufs != nil {
			r.Alloc = bufs.get
		}
		for {
			if err := ctx.Err(); err != nil {
				_ = r.Close()
				return err
			}
			rec, err := r.Next()
			if err == io.EOF {
				break
			}
			var ce *spool.CorruptError
			if errors.As(err, &ce) {
				if err := fn(item{seq: seq, seg: si, corrupt: ce}); err != nil {
					_ = r.Close()
					return err
				}
				seq++
				continue
			}
			if err != nil {
				_ = r.Close()
				return err
			}
			if err := fn(item{seq: seq, seg: si, rec: rec, base: base}); err != nil {
				_ = r.Close()
				return err
			}
			seq++
			base += rec.Events
		}
		_ = r.Close()
	}
	return nil
}

// eventDay is the partition day of an event: its own date, or the day it
// was received when it has no readable time.
func eventDay(eventMicros int64, rec *spool.Record) int32 {
	if eventMicros <= 0 {
		eventMicros = rec.ReceivedAt.UnixMicro()
	}
	return layout.Day(eventMicros)
}
