package dedupe

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// ReadStats sees what Maintain reports, and changes nothing: no folder is
// made for a history that does not exist, and a pending run is not counted.
func TestReadStatsMatchesMaintain(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "dest")
	if st, err := ReadStats(dir); err != nil || st != (Stats{}) {
		t.Fatalf("missing history: %+v, %v", st, err)
	}
	if _, err := os.Stat(dir); err == nil {
		t.Fatal("ReadStats made the folder")
	}
	ix := mustOpen(t, dir)
	t0 := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	for p := range 6 {
		var keys []string
		for i := range 100 * (p + 1) {
			keys = append(keys, fmt.Sprintf("p%d-%d", p, i))
		}
		commit(t, ix, fmt.Sprintf("plan%d", p), t0.Add(time.Duration(p)*time.Minute), keys...)
	}
	s := &Set{}
	s.Add(0, key("pending"))
	res, err := ix.Resolve(s, t0)
	if err != nil {
		t.Fatal(err)
	}
	if err := ix.WritePending("open-plan", s, res, t0); err != nil {
		t.Fatal(err)
	}
	want, err := ix.Maintain(t0.Add(-time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	got, err := ReadStats(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got.Runs != want.Runs || got.Keys != want.Keys || got.Bytes != want.Bytes || got.Keys != 2100 {
		t.Fatalf("ReadStats %+v, Maintain %+v", got, want)
	}
}
