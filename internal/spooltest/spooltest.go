// Package spooltest fills spools for tests with events posted the way
// SendGrid posts them.
package spooltest

import (
	"bytes"
	"context"
	"os"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sgload/sgload/spool"
)

// Options shape the spool Fill writes.
type Options struct {
	Node         string // default "test"
	PerPost      int    // events per POST (default 50)
	SegmentBytes int64  // seal segments at this size (spool's default when 0)
}

// Body frames events as SendGrid frames a webhook POST: a JSON array with
// one event per line, ",\r\n" between them.
func Body(events [][]byte) []byte {
	body := append([]byte("["), bytes.Join(events, []byte(",\r\n"))...)
	return append(body, "\r\n]\r\n"...)
}

// Fill appends events to the spool at root as POSTs of o.PerPost events and
// closes it, which seals the last segment.
func Fill(t testing.TB, root string, events [][]byte, o Options) {
	t.Helper()
	if o.Node == "" {
		o.Node = "test"
	}
	if o.PerPost <= 0 {
		o.PerPost = 50
	}
	sp, err := spool.Open(root, spool.Options{Node: o.Node, MinFreeBytes: -1, SegmentBytes: o.SegmentBytes,
		Registerer: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < len(events); i += o.PerPost {
		chunk := events[i:min(i+o.PerPost, len(events))]
		p, err := spool.Prepare(len(chunk), "test", nil, Body(chunk))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := sp.Append(context.Background(), p); err != nil {
			t.Fatal(err)
		}
	}
	if err := sp.Close(); err != nil {
		t.Fatal(err)
	}
}

// Lines reads NDJSON files into one event per line.
func Lines(t testing.TB, paths ...string) [][]byte {
	t.Helper()
	var out [][]byte
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, bytes.Split(bytes.TrimSpace(data), []byte("\n"))...)
	}
	return out
}
