package spool

import (
	"bytes"
	"errors"
	"io"
	"testing"
)

// TestForgetMovesCursors: a follower whose cursor sits after, or inside, a
// record that loses events keeps reading at the same event.
func TestForgetMovesCursors(t *testing.T) {
	root := t.TempDir()
	s := openTest(t, root, Options{})
	post := func(body string, n int) {
		t.Helper()
		p, err := Prepare(n, "test", map[string]string{"X-Twilio-Email-Event-Webhook-Signature": "sig"}, []byte(body))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.Append(t.Context(), p); err != nil {
			t.Fatal(err)
		}
	}
	post(`[{"email":"gone@x.com","n":1},{"email":"a@x.com","n":2}]`, 2)
	post(`[{"email":"b@x.com","n":3},{"email":"GONE@x.com","n":4},{"email":"c@x.com","n":5}]`, 3)
	post(`[{"email":"d@x.com","n":6}]`, 1)
	s.Close()
	d := Dir{Root: root}
	// Two followers: one at the start of the third record, one inside the
	// second, after its first event.
	at := func(name string, records, events int) {
		f, err := OpenFollower(d, name)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		var pos Position
		for range records {
			_, p, err := f.Next()
			if err != nil {
				t.Fatal(err)
			}
			pos = p
		}
		pos.Event = events
		if err := f.Commit(pos); err != nil {
			t.Fatal(err)
		}
	}
	at("third", 2, 0)
	at("inside", 1, 2) // b and GONE handled, c not yet
	drop := func(b []byte) bool { return bytes.Contains(bytes.ToLower(b), []byte("gone@x.com")) }
	sc, err := Forget(root, drop)
	if err != nil {
		t.Fatal(err)
	}
	if sc.Events != 2 || sc.Segments != 1 || sc.CursorsMoved != 2 {
		t.Fatalf("scrubbed %+v", sc)
	}
	in, err := OpenFollower(d, "inside")
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	if pos := in.Position(); pos.Event != 1 {
		t.Fatalf("inside cursor %+v: one event before it went, so Event should be 1", pos)
	}
	rec, _, err := in.Next()
	if err != nil || !bytes.Contains(rec.Body, []byte(`"n":5`)) || bytes.Contains(rec.Body, []byte("GONE")) {
		t.Fatalf("inside follower reads %s, %v; want the second record without GONE", rec.Body, err)
	}
	f, err := OpenFollower(d, "third")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rec, _, err = f.Next()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(rec.Body, []byte(`"n":6`)) {
		t.Fatalf("after the erasure the follower reads %s, want the third record", rec.Body)
	}
	if _, _, err := f.Next(); !errors.Is(err, io.EOF) {
		t.Fatalf("then %v, want the end", err)
	}
	// The second record lost its signature headers: its body changed.
	r, _ := OpenReader(d.Events() + "/" + segName(t, d))
	defer r.Close()
	r.Next()
	second, err := r.Next()
	if err != nil {
		t.Fatal(err)
	}
	if second.Events != 2 || second.Header["X-Twilio-Email-Event-Webhook-Signature"] != "" || second.Header["Sgload-Rewritten"] != "forget" {
		t.Fatalf("rewritten record %+v", second)
	}
}

func segName(t *testing.T, d Dir) string {
	segs, err := d.Sealed()
	if err != nil || len(segs) != 1 {
		t.Fatalf("segments %v, %v", segs, err)
	}
	return segs[0].Name()
}
