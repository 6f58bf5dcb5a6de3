package dedupe

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

func key(s string) Key { return IDKey([]byte(s)) }

func TestResolveWithinPlanAndHistory(t *testing.T) {
	ix, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	// Plan 1: events 0..3; 2 repeats 0's id, 3 repeats 1's fingerprint.
	s := &Set{}
	s.Add(0, key("a"), key("fa"))
	s.Add(1, key("b"), key("fb"))
	s.Add(2, key("a"), key("fc"))
	s.Add(3, key("fb"))
	res, err := ix.Resolve(s)
	if err != nil {
		t.Fatal(err)
	}
	for ord, want := range []bool{false, false, true, true} {
		if res.Dup(ord) != want {
			t.Errorf("plan 1 event %d: dup %v, want %v", ord, res.Dup(ord), want)
		}
	}
	if res.InPlan != 2 || res.InHistory != 0 {
		t.Errorf("counts %+v", res)
	}
	if err := ix.WritePending("p1", s); err != nil {
		t.Fatal(err)
	}
	// Uncommitted, plan 1's keys are not history yet: a redo of plan 1
	// must not find its own events.
	again := &Set{}
	again.Add(0, key("a"))
	if r, _ := ix.Resolve(again); r.Dup(0) {
		t.Fatal("pending keys counted as history")
	}
	if err := ix.Commit("p1"); err != nil {
		t.Fatal(err)
	}
	s2 := &Set{}
	s2.Add(0, key("new"), key("fnew"))
	s2.Add(1, key("other-id"), key("fa")) // plan 1's event 0 again, under a new id
	s2.Add(2, key("b"), key("fz"))        // plan 1's id b
	res2, err := ix.Resolve(s2)
	if err != nil {
		t.Fatal(err)
	}
	for ord, want := range []bool{false, true, true} {
		if res2.Dup(ord) != want {
			t.Errorf("plan 2 event %d: dup %v, want %v", ord, res2.Dup(ord), want)
		}
	}
	if res2.InHistory != 2 {
		t.Errorf("plan 2 history duplicates %d, want 2", res2.InHistory)
	}
}

func TestAbortAndExpire(t *testing.T) {
	dir := t.TempDir()
	ix, _ := Open(dir)
	s := &Set{}
	s.Add(0, key("x"))
	ix.WritePending("p", s)
	if err := ix.Abort("p"); err != nil {
		t.Fatal(err)
	}
	if m, _ := filepath.Glob(filepath.Join(dir, "*")); len(m) != 0 {
		t.Fatalf("abort left %v", m)
	}
	ix.WritePending("p", s)
	ix.Commit("p")
	old := time.Now().Add(-2 * time.Hour)
	os.Chtimes(filepath.Join(dir, "p"+runSuffix), old, old)
	n, err := ix.Expire(time.Now().Add(-time.Hour))
	if err != nil || n != 1 {
		t.Fatalf("Expire = %d, %v", n, err)
	}
	again := &Set{}
	again.Add(0, key("x"))
	if r, _ := ix.Resolve(again); r.Dup(0) {
		t.Fatal("expired keys still count")
	}
}
