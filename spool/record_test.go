package spool

import (
	"bytes"
	"errors"
	"os"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestRecordRoundTrip(t *testing.T) {
	at := time.Date(2026, 11, 23, 14, 20, 0, 123456000, time.UTC)
	tests := []struct {
		name string
		body string
	}{
		{"sendgrid framing", "[{\"event\":\"open\"},\r\n{\"event\":\"click\"}\r\n]\r\n"},
		{"compact", `[{"a":1},{"b":2}]`},
		{"empty array", `[]`},
		{"lone CR and LF", "\r[\n{\"x\":\"\\r\\n\"}\n\r]\r\r\n\n"},
		{"starts and ends with LF", "\n[]\n"},
		{"not JSON at all", "line one\nline two\r\n\x00\xff"},
		{"empty", ""},
		{"looks like the body key", `[{"hdr":1,"body":2},"body":]`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			in := &Record{
				Sequence:   1763907600000000,
				Events:     2,
				ReceivedAt: at,
				Node:       "node-1",
				Auth:       "signature+oauth",
				Header:     map[string]string{"X-Twilio-Email-Event-Webhook-Timestamp": "1606575372", "User-Agent": "SendGrid <Event> API"},
				Body:       []byte(tc.body),
			}
			line, err := EncodeRecord(in)
			if err != nil {
				t.Fatal(err)
			}
			if i := bytes.IndexAny(line, "\r\n"); i != len(line)-1 || line[i] != '\n' {
				t.Fatalf("record is not exactly one line: %q", line)
			}
			out, err := ParseRecord(line)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(in, out); diff != "" {
				t.Errorf("round trip (-in +out):\n%s", diff)
			}
		})
	}
}

func TestParseRecordRejectsDamage(t *testing.T) {
	in := &Record{Sequence: 7, Events: 1, ReceivedAt: time.Unix(1, 0), Node: "n",
		Body: []byte("[{\"event\":\"open\"}\r\n]")}
	line, err := EncodeRecord(in)
	if err != nil {
		t.Fatal(err)
	}
	cases := map[string][]byte{
		"torn":          line[:len(line)/2],
		"flipped byte":  bytes.Replace(line, []byte("open"), []byte("opem"), 1),
		"zeros":         make([]byte, len(line)),
		"empty":         nil,
		"other version": bytes.Replace(line, []byte(`"v":1`), []byte(`"v":9`), 1),
		"bad offsets":   bytes.Replace(line, []byte(`"cr":[17]`), []byte(`"cr":[99]`), 1),
	}
	for name, l := range cases {
		if _, err := ParseRecord(l); !errors.Is(err, ErrCorrupt) {
			t.Errorf("%s: err = %v, want ErrCorrupt", name, err)
		}
	}
}

// FuzzParseRecord feeds arbitrary lines to the envelope reader: it must never
// panic, and whatever it accepts must encode back to a record it reads the
// same way.
func FuzzParseRecord(f *testing.F) {
	seed, _ := EncodeRecord(&Record{Sequence: 1, Events: 2, ReceivedAt: time.Unix(2, 0), Node: "n",
		Header: map[string]string{"A": "b"}, Body: []byte("[{},\r\n{}]\r\n")})
	f.Add(seed)
	f.Add([]byte(`{"v":1,"seq":1,"n":0,"at":"2026-01-01T00:00:00Z","len":0,"crc":0,"cr":[],"lf":[],"body":}`))
	f.Add([]byte(`{"body":}`))
	f.Add([]byte("{\"v\":1,\"seq\":1,\"len\":3,\"crc\":0,\"cr\":[0,1],\"lf\":[],\"body\":x}"))
	f.Fuzz(func(t *testing.T, line []byte) {
		r, err := ParseRecord(line)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("error %v does not wrap ErrCorrupt", err)
			}
			return
		}
		again, err := EncodeRecord(r)
		if err != nil {
			t.Fatal(err)
		}
		r2, err := ParseRecord(again)
		if err != nil {
			t.Fatalf("re-encoded record does not parse: %v", err)
		}
		if !bytes.Equal(r.Body, r2.Body) || r.Sequence != r2.Sequence || r.Events != r2.Events {
			t.Fatalf("re-encoded record differs")
		}
	})
}

func BenchmarkParseRecord(b *testing.B) {
	data, err := os.ReadFile("../testdata/events/sample-2000.ndjson")
	if err != nil {
		b.Fatal(err)
	}
	body := bytes.ReplaceAll(bytes.TrimSpace(data), []byte("\n"), []byte(",\r\n"))
	body = append(append([]byte("["), body...), "\r\n]\r\n"...)
	line, err := EncodeRecord(&Record{Sequence: 1, Events: 2000, ReceivedAt: time.Unix(1, 0), Node: "n", Body: body})
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(line)))
	for b.Loop() {
		if _, err := ParseRecord(line); err != nil {
			b.Fatal(err)
		}
	}
}
