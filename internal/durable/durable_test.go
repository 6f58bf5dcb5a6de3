package durable

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
)

func TestWriteFileReplacesAtomically(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "state.json")
	if err := WriteFile(p, []byte("one"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := WriteFile(p, []byte("two"), 0o600); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(p)
	if err != nil || string(got) != "two" {
		t.Fatalf("read back %q, %v; want two", got, err)
	}
	fi, _ := os.Stat(p)
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want 0600", fi.Mode().Perm())
	}
	assertNoTemps(t, dir)
}

func TestWriteFuncFailureLeavesOldContent(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "plan.json")
	if err := WriteFile(p, []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	boom := errors.New("boom")
	err := WriteFunc(p, 0o644, func(w io.Writer) error {
		w.Write([]byte("half"))
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("err = %v, want boom", err)
	}
	got, _ := os.ReadFile(p)
	if string(got) != "old" {
		t.Fatalf("content %q after failed write, want old", got)
	}
	assertNoTemps(t, dir)
}

func TestSweepRemovesOnlyTemps(t *testing.T) {
	dir := t.TempDir()
	for _, n := range []string{"a.ndjson", "b.ndjson.123.tmp", "c.tmp"} {
		os.WriteFile(filepath.Join(dir, n), nil, 0o644)
	}
	removed, err := Sweep(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(removed) != 2 {
		t.Fatalf("removed %v, want the two .tmp files", removed)
	}
	if _, err := os.Stat(filepath.Join(dir, "a.ndjson")); err != nil {
		t.Fatal("sweep removed a sealed file")
	}
}

func TestMkdirAllAndRename(t *testing.T) {
	root := t.TempDir()
	deep := filepath.Join(root, "a", "b", "c")
	if err := MkdirAll(deep, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := MkdirAll(deep, 0o755); err != nil {
		t.Fatalf("second MkdirAll: %v", err)
	}
	src := filepath.Join(deep, "x")
	os.WriteFile(src, []byte("x"), 0o644)
	dst := filepath.Join(root, "a", "x")
	if err := Rename(src, dst); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dst); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(root, "file")
	os.WriteFile(file, nil, 0o644)
	if err := MkdirAll(file, 0o755); err == nil {
		t.Fatal("MkdirAll over a file succeeded")
	}
}

func assertNoTemps(t *testing.T, dir string) {
	t.Helper()
	m, _ := filepath.Glob(filepath.Join(dir, "*"+TmpSuffix))
	if len(m) > 0 {
		t.Fatalf("temp files left behind: %v", m)
	}
}
