package bucket

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"gocloud.dev/blob"
	_ "gocloud.dev/blob/fileblob"
	"gocloud.dev/gcerrors"
)

func TestNormalize(t *testing.T) {
	dir := t.TempDir()
	u, root, err := Normalize(filepath.Join(dir, "bucket"))
	if err != nil {
		t.Fatal(err)
	}
	if root != filepath.Join(dir, "bucket") || !strings.Contains(u, "metadata=skip") || !strings.Contains(u, "no_tmp_dir=1") {
		t.Fatalf("Normalize = %q, %q", u, root)
	}
	for _, bad := range []string{"file://relative/path"} {
		if _, _, err := Normalize(bad); err == nil {
			t.Errorf("Normalize(%q) accepted", bad)
		}
	}
	if u, root, err := Normalize("s3://b?region=x"); err != nil || root != "" || u != "s3://b?region=x" {
		t.Errorf("s3 URL changed: %q %q %v", u, root, err)
	}
}

func openFolder(t *testing.T) *Bucket {
	t.Helper()
	b, err := Open(context.Background(), filepath.Join(t.TempDir(), "bucket"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

// files lists every file under the bucket's folder.
func files(t *testing.T, b *Bucket) []string {
	t.Helper()
	var names []string
	filepath.WalkDir(b.Root(), func(p string, e os.DirEntry, err error) error {
		if err == nil && !e.IsDir() {
			rel, _ := filepath.Rel(b.Root(), p)
			names = append(names, filepath.ToSlash(rel))
		}
		return nil
	})
	return names
}

func TestFolderWrites(t *testing.T) {
	ctx := context.Background()
	b := openFolder(t)
	if err := b.WriteAll(ctx, "a/b/c.parquet", []byte("x"), nil); err != nil {
		t.Fatal(err)
	}
	if err := b.Upload(ctx, "a/b/d.parquet", strings.NewReader("yy"), &blob.WriterOptions{ContentType: "application/octet-stream"}); err != nil {
		t.Fatal(err)
	}
	if err := b.WriteAll(ctx, "a/b/c.parquet", []byte("replaced"), nil); err != nil {
		t.Fatal(err)
	}
	if got := files(t, b); strings.Join(got, ",") != "a/b/c.parquet,a/b/d.parquet" {
		t.Fatalf("bucket folder holds %v; want only the objects (no .attrs, no temp files)", got)
	}
	// gocloud's fileblob reads what sgload wrote.
	if got, err := b.ReadAll(ctx, "a/b/c.parquet"); err != nil || string(got) != "replaced" {
		t.Fatalf("ReadAll = %q, %v", got, err)
	}
	// A wrong ContentMD5 leaves nothing behind.
	if err := b.WriteAll(ctx, "a/e", []byte("x"), &blob.WriterOptions{ContentMD5: bytes.Repeat([]byte{1}, 16)}); err == nil {
		t.Fatal("wrong MD5 accepted")
	}
	if ok, _ := b.Exists(ctx, "a/e"); ok {
		t.Fatal("object with a wrong MD5 exists")
	}
	for _, bad := range []string{"../x", "a//b", "/abs", "a/", "a\x00b"} {
		if err := b.WriteAll(ctx, bad, nil, nil); err == nil {
			t.Errorf("key %q accepted", bad)
		}
	}
	os.WriteFile(filepath.Join(b.Root(), "a", "b", "f.parquet.1869f3.tmp"), nil, 0o644)
	if n, err := b.Sweep("a"); err != nil || n != 1 {
		t.Fatalf("Sweep = %d, %v", n, err)
	}
}

// TestFolderUploadFileLinks: a finished local file on the folder's file
// system becomes the object without a copy (the same inode), the name only
// once it is whole, create-if-absent still refused when the object exists,
// and the source file may then be removed.
func TestFolderUploadFileLinks(t *testing.T) {
	ctx := context.Background()
	b := openFolder(t)
	src := filepath.Join(filepath.Dir(b.Root()), "work.parquet")
	if err := os.WriteFile(src, []byte("finished"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := b.UploadFile(ctx, "events/x/part.parquet", src, &blob.WriterOptions{IfNotExist: true}); err != nil {
		t.Fatal(err)
	}
	a, err := os.Stat(src)
	if err != nil {
		t.Fatal(err)
	}
	o, err := os.Stat(filepath.Join(b.Root(), "events", "x", "part.parquet"))
	if err != nil {
		t.Fatal(err)
	}
	if !os.SameFile(a, o) {
		t.Error("the object is a copy of the file, not the file")
	}
	err = b.UploadFile(ctx, "events/x/part.parquet", src, &blob.WriterOptions{IfNotExist: true})
	if gcerrors.Code(err) != gcerrors.FailedPrecondition {
		t.Fatalf("second create-if-absent: %v, want FailedPrecondition", err)
	}
	if err := os.Remove(src); err != nil {
		t.Fatal(err)
	}
	if got, err := b.ReadAll(ctx, "events/x/part.parquet"); err != nil || string(got) != "finished" {
		t.Fatalf("ReadAll = %q, %v", got, err)
	}
	if got := files(t, b); strings.Join(got, ",") != "events/x/part.parquet" {
		t.Fatalf("bucket folder holds %v; want only the object", got)
	}
}

// TestFolderIfNotExistIsAtomic races writers to create one key: exactly
// one wins, and every other gets the error every store gives
// (gcerrors.FailedPrecondition), whatever the timing.
func TestFolderIfNotExistIsAtomic(t *testing.T) {
	ctx := context.Background()
	b := openFolder(t)
	const n = 16
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = b.WriteAll(ctx, "_sgload/destination.json", []byte{byte('a' + i)}, &blob.WriterOptions{IfNotExist: true})
		}()
	}
	wg.Wait()
	won := -1
	for i, err := range errs {
		switch {
		case err == nil && won >= 0:
			t.Fatalf("writers %d and %d both created the object", won, i)
		case err == nil:
			won = i
		case gcerrors.Code(err) != gcerrors.FailedPrecondition:
			t.Fatalf("writer %d: %v (code %v), want FailedPrecondition", i, err, gcerrors.Code(err))
		}
	}
	got, err := b.ReadAll(ctx, "_sgload/destination.json")
	if err != nil || won < 0 || string(got) != string(rune('a'+won)) {
		t.Fatalf("object holds %q (%v), winner %d", got, err, won)
	}
	if got := files(t, b); len(got) != 1 {
		t.Fatalf("bucket folder holds %v", got)
	}
}

func TestReaderAndListThroughDeadlines(t *testing.T) {
	ctx := context.Background()
	b := openFolder(t)
	for _, k := range []string{"p/1", "p/2", "q/3"} {
		if err := b.WriteAll(ctx, k, []byte(k), nil); err != nil {
			t.Fatal(err)
		}
	}
	it := b.List(&blob.ListOptions{Prefix: "p/"})
	var keys []string
	for {
		obj, err := it.Next(ctx)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, obj.Key)
	}
	if strings.Join(keys, ",") != "p/1,p/2" {
		t.Fatalf("listed %v", keys)
	}
	r, err := b.NewRangeReader(ctx, "q/3", 1, 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(r)
	r.Close()
	if err != nil || string(got) != "/" {
		t.Fatalf("range read %q, %v", got, err)
	}
	if _, err := b.ReadAll(ctx, "nope"); gcerrors.Code(err) != gcerrors.NotFound {
		t.Fatalf("missing object: %v", err)
	}
}
