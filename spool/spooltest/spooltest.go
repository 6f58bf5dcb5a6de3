// Package spooltest fills spools for tests with events posted the way
// SendGrid posts them.
package spooltest

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"regexp"
	"strings"
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
	sp, err := spool.OpenWriter(root, spool.Options{Node: o.Node, MinFreeBytes: -1, SegmentBytes: o.SegmentBytes,
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

// Oracle applies the dedupe rule to events without sgload's code (with
// encoding/json), so tests check sgload against an answer it did not
// compute: Key names the distinct event raw is, Table its table.
type Oracle struct{}

var nonWord = regexp.MustCompile(`[^a-z0-9_]+`)

// Table is the event's table: its type in lower case, runs of anything
// but a-z, 0-9 and _ as one _, "unknown" for none.
func (Oracle) Table(t testing.TB, raw []byte) string {
	ev := decode(t, raw)
	typ, _ := ev["event"].(string)
	if n, ok := ev["event"].(json.Number); ok {
		typ = n.String()
	}
	if typ = strings.Trim(nonWord.ReplaceAllString(strings.ToLower(typ), "_"), "_"); typ == "" {
		return "unknown"
	}
	return typ
}

// Key is "id:<table>:<sg_event_id>" for an event with an id, and
// "fp:<the event re-encoded with sorted keys>" for one without.
func (o Oracle) Key(t testing.TB, raw []byte) string {
	ev := decode(t, raw)
	switch id := ev["sg_event_id"].(type) {
	case string:
		if id != "" {
			return "id:" + o.Table(t, raw) + ":" + id
		}
	case json.Number:
		return "id:" + o.Table(t, raw) + ":" + id.String()
	}
	canonical, err := json.Marshal(ev) // maps marshal with sorted keys
	if err != nil {
		t.Fatal(err)
	}
	return "fp:" + string(canonical)
}

func decode(t testing.TB, raw []byte) map[string]any {
	d := json.NewDecoder(bytes.NewReader(raw))
	d.UseNumber()
	var ev map[string]any
	if err := d.Decode(&ev); err != nil {
		t.Fatalf("oracle: %v: %s", err, raw)
	}
	return ev
}
