package main

import (
	"context"
	"fmt"
	"time"

	"github.com/sgload/sgload/spool"
)

// writeSpool fills a spool with the batches, as serve would have, through
// the real writer (without HTTP); segments are sealed on close.
func writeSpool(ctx context.Context, dir string, batches []batch, segmentBytes int64) (events int, err error) {
	sp, err := spool.OpenWriter(dir, spool.Options{Node: "bench", SegmentBytes: segmentBytes, MinFreeBytes: -1,
		SegmentAge: time.Hour})
	if err != nil {
		return 0, err
	}
	for _, b := range batches {
		p, err := spool.Prepare(b.events, "bench", map[string]string{"Content-Type": "application/json"}, append([]byte(nil), b.body...))
		if err != nil {
			sp.Close()
			return 0, err
		}
		if _, err := sp.Append(ctx, p); err != nil {
			sp.Close()
			return 0, fmt.Errorf("append: %w", err)
		}
		events += b.events
	}
	return events, sp.Close()
}
