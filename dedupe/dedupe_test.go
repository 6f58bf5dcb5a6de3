package dedupe

import (
	"encoding/binary"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/zeebo/xxh3"

	"github.com/sgload/sgload/internal/durable"
)

func key(s string) Key { return xxh3.HashString128(s).Bytes() }

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

const window = 72 * time.Hour

// commit resolves a plan of keys at now, commits its kept keys and returns
// which were duplicates.
func commit(t *testing.T, ix *Index, id string, now time.Time, keys ...string) []bool {
	t.Helper()
	s := &Set{}
	for i, k := range keys {
		s.Add(i, key(k))
	}
	res, err := ix.Resolve(s, now.Add(-window))
	if err != nil {
		t.Fatal(err)
	}
	if err := ix.WritePending(id, s, res, now); err != nil {
		t.Fatal(err)
	}
	if err := ix.Commit(id); err != nil {
		t.Fatal(err)
	}
	out := make([]bool, len(keys))
	for i := range keys {
		out[i] = res.Dup(i)
	}
	return out
}

func mustOpen(t *testing.T, dir string) *Index {
	t.Helper()
	ix, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	return ix
}

func TestResolveWithinPlanAndHistory(t *testing.T) {
	ix := mustOpen(t, t.TempDir())
	s := &Set{}
	for i, k := range []string{"a", "b", "a", "c", "b"} {
		s.Add(i, key(k))
	}
	res, err := ix.Resolve(s, t0.Add(-window))
	if err != nil {
		t.Fatal(err)
	}
	for ord, want := range []bool{false, false, true, false, true} {
		if res.Dup(ord) != want {
			t.Errorf("plan 1 event %d: dup %v, want %v", ord, res.Dup(ord), want)
		}
	}
	if res.InPlan != 2 || res.InHistory != 0 {
		t.Errorf("counts %+v", res)
	}
	if err := ix.WritePending("p1", s, res, t0); err != nil {
		t.Fatal(err)
	}
	// Uncommitted, plan 1's keys are not history yet: a redo of plan 1
	// must not find its own events.
	again := &Set{}
	again.Add(0, key("a"))
	if r, _ := ix.Resolve(again, t0.Add(-window)); r.Dup(0) {
		t.Fatal("pending keys counted as history")
	}
	if err := ix.Commit("p1"); err != nil {
		t.Fatal(err)
	}
	if err := ix.Commit("p1"); err != nil { // after a crash, finish runs again
		t.Fatal(err)
	}
	got := commit(t, ix, "p2", t0.Add(time.Hour), "new", "a", "c")
	if want := []bool{false, true, true}; !equal(got, want) {
		t.Errorf("plan 2 dups %v, want %v", got, want)
	}
}

func TestWindowIsExact(t *testing.T) {
	for _, tc := range []struct {
		later time.Duration
		dup   bool
	}{{71 * time.Hour, true}, {72*time.Hour - time.Minute, true}, {72*time.Hour + time.Minute, false}, {73 * time.Hour, false}} {
		ix := mustOpen(t, t.TempDir())
		commit(t, ix, "p1", t0, "a")
		// Other plans in between, merged with the first: merging keeps
		// each key's own time.
		for i := range 8 {
			commit(t, ix, "q"+string(rune('a'+i)), t0.Add(time.Duration(i+1)*time.Hour), "x"+string(rune('a'+i)))
		}
		if _, err := ix.Maintain(t0.Add(9*time.Hour - window)); err != nil {
			t.Fatal(err)
		}
		if got := commit(t, ix, "p2", t0.Add(tc.later), "a"); got[0] != tc.dup {
			t.Errorf("a retry %v later: dup %v, want %v", tc.later, got[0], tc.dup)
		}
	}
}

func TestDuplicatesDoNotRenewTheirKey(t *testing.T) {
	ix := mustOpen(t, t.TempDir())
	commit(t, ix, "p1", t0, "a")
	if got := commit(t, ix, "p2", t0.Add(71*time.Hour), "a"); !got[0] {
		t.Fatal("retry within the window kept")
	}
	// The destination's copy is from t0, so 73 h after it the key is gone,
	// though a duplicate came by at 71 h.
	if got := commit(t, ix, "p3", t0.Add(73*time.Hour), "a"); got[0] {
		t.Fatal("a dropped duplicate renewed the key")
	}
}

func TestMaintainMergesAndExpires(t *testing.T) {
	dir := t.TempDir()
	ix := mustOpen(t, dir)
	var all []string
	for p := range 20 {
		var keys []string
		for i := range 50 {
			keys = append(keys, string(rune('A'+p))+string(rune('a'+i%26))+string(rune('0'+i/26)))
		}
		commit(t, ix, "p"+string(rune('a'+p)), t0.Add(time.Duration(p)*time.Minute), keys...)
		all = append(all, keys...)
	}
	st, err := ix.Maintain(t0.Add(-window))
	if err != nil {
		t.Fatal(err)
	}
	if st.Runs >= 8 || st.Merged == 0 || st.Keys != int64(len(all)) {
		t.Fatalf("after maintain: %+v, want few runs holding %d keys", st, len(all))
	}
	got := commit(t, ix, "check", t0.Add(time.Hour), all...)
	for i, d := range got {
		if !d {
			t.Fatalf("key %s lost by the merge", all[i])
		}
	}
	// Everything expires together once past the window.
	st, err = ix.Maintain(t0.Add(2 * time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if st.Runs != 0 || st.Keys != 0 {
		t.Fatalf("after expiry: %+v", st)
	}
}

// TestLargeRunLookups drives the Bloom filter and block index path (a run
// far larger than the plan).
func TestLargeRunLookups(t *testing.T) {
	ix := mustOpen(t, t.TempDir())
	s := &Set{}
	for i := range 20000 {
		s.Add(i, numKey(i))
	}
	res, _ := ix.Resolve(s, t0.Add(-window))
	if err := ix.WritePending("big", s, res, t0); err != nil {
		t.Fatal(err)
	}
	ix.Commit("big")
	probe := &Set{}
	for i := range 300 {
		probe.Add(i, numKey(i*137)) // 146 of them are in the run (i*137 < 20000)
	}
	res, err := ix.Resolve(probe, t0.Add(-window))
	if err != nil {
		t.Fatal(err)
	}
	for i := range 300 {
		if want := i*137 < 20000; res.Dup(i) != want {
			t.Fatalf("key %d: dup %v, want %v", i*137, res.Dup(i), want)
		}
	}
}

func numKey(i int) Key {
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], uint64(i))
	return xxh3.Hash128(b[:]).Bytes()
}

func TestAbort(t *testing.T) {
	dir := t.TempDir()
	ix := mustOpen(t, dir)
	s := &Set{}
	s.Add(0, key("x"))
	res, _ := ix.Resolve(s, t0)
	ix.WritePending("p", s, res, t0)
	if err := ix.Abort("p"); err != nil {
		t.Fatal(err)
	}
	if m, _ := filepath.Glob(filepath.Join(dir, "*")); len(m) != 0 {
		t.Fatalf("abort left %v", m)
	}
}

// TestMergeCrash: a merge interrupted after its output was written is
// finished by the next Open; one interrupted before is forgotten.
func TestMergeCrash(t *testing.T) {
	for _, outputWritten := range []bool{true, false} {
		dir := t.TempDir()
		ix := mustOpen(t, dir)
		for i := range 4 {
			commit(t, ix, "p"+string(rune('a'+i)), t0, "k"+string(rune('a'+i)))
		}
		runs, _ := ix.current()
		in := mergeIntent{Output: "m-crashed.run"}
		for _, r := range runs {
			in.Inputs = append(in.Inputs, r.name)
		}
		b, _ := json.Marshal(in)
		durable.WriteFile(filepath.Join(dir, intentFile), b, 0o644)
		if outputWritten {
			// The output holds everything (here: a copy of the first input
			// plus the others' keys, written by a real merge elsewhere).
			other := mustOpen(t, t.TempDir())
			for i := range 4 {
				commit(t, other, "p"+string(rune('a'+i)), t0, "k"+string(rune('a'+i)))
			}
			orun, _ := other.current()
			r, err := other.merge(orun, 0)
			if err != nil {
				t.Fatal(err)
			}
			data, _ := os.ReadFile(r.path)
			os.WriteFile(filepath.Join(dir, in.Output), data, 0o644)
		} else {
			os.WriteFile(filepath.Join(dir, in.Output+".123"+durable.TmpSuffix), []byte("half"), 0o644)
		}
		ix = mustOpen(t, dir)
		runs, _ = ix.current()
		if wantRuns := map[bool]int{true: 1, false: 4}[outputWritten]; len(runs) != wantRuns {
			t.Errorf("output written %v: %d runs after recovery, want %d", outputWritten, len(runs), wantRuns)
		}
		if _, err := os.Stat(filepath.Join(dir, intentFile)); err == nil {
			t.Error("intent left behind")
		}
		got := commit(t, ix, "check", t0.Add(time.Hour), "ka", "kb", "kc", "kd")
		if !equal(got, []bool{true, true, true, true}) {
			t.Errorf("output written %v: keys lost: %v", outputWritten, got)
		}
	}
}

func TestLegacyRunsAreRead(t *testing.T) {
	dir := t.TempDir()
	// A run as the previous release wrote it: sorted keys, mtime = commit.
	k := LegacyKey(nil, []byte("old-id"))
	old := filepath.Join(dir, "0000000000000001.run")
	var hdr [16]byte
	copy(hdr[:], legacyMagic)
	binary.LittleEndian.PutUint64(hdr[8:], 1)
	os.WriteFile(old, append(hdr[:], k[:]...), 0o644)
	os.Chtimes(old, t0, t0)

	legacy, err := LegacyRuns(dir)
	if err != nil || len(legacy) != 1 {
		t.Fatalf("legacy runs %v, %v", legacy, err)
	}
	ix := mustOpen(t, filepath.Join(dir, "dest"))
	if err := ix.Adopt(legacy); err != nil {
		t.Fatal(err)
	}
	if !ix.HasLegacy() {
		t.Fatal("adopted runs not seen")
	}
	s := &Set{}
	s.Add(0, key("new-key-of-old-id"))
	s.AddLegacy(0, LegacyKey([]byte(`{"sg_event_id":"old-id"}`), []byte("old-id")))
	s.Add(1, key("other"))
	s.AddLegacy(1, LegacyKey([]byte(`{"x":1}`), nil))
	res, err := ix.Resolve(s, t0.Add(-time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if !res.Dup(0) || res.Dup(1) {
		t.Fatalf("dups %v %v, want true false", res.Dup(0), res.Dup(1))
	}
	if n, _ := ix.Maintain(t0.Add(time.Hour)); n.Expired != 1 || ix.HasLegacy() {
		t.Fatalf("legacy run not expired: %+v", n)
	}
}

func equal(a, b []bool) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
