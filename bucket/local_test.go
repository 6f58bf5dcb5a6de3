package bucket

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gocloud.dev/blob"
	_ "gocloud.dev/blob/fileblob"
)

func TestNormalizeAndDurableWrites(t *testing.T) {
	dir := t.TempDir()
	u, root, err := Normalize(filepath.Join(dir, "bucket"))
	if err != nil {
		t.Fatal(err)
	}
	if root != filepath.Join(dir, "bucket") || !strings.Contains(u, "metadata=skip") || !strings.Contains(u, "no_tmp_dir=1") {
		t.Fatalf("Normalize = %q, %q", u, root)
	}
	ctx := context.Background()
	b, err := blob.OpenBucket(ctx, u)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if err := b.WriteAll(ctx, "a/b/c.parquet", []byte("x"), nil); err != nil {
		t.Fatal(err)
	}
	d := folder{root: root}
	if err := d.afterWrite(ctx, "a/b/c.parquet"); err != nil {
		t.Fatal(err)
	}
	var names []string
	filepath.Walk(root, func(p string, info os.FileInfo, err error) error {
		if !info.IsDir() {
			names = append(names, p)
		}
		return nil
	})
	if len(names) != 1 {
		t.Fatalf("bucket folder holds %v; want only the object (no .attrs, no temp files)", names)
	}
	os.WriteFile(filepath.Join(root, "a", "b", "d.parquet.1869f3.tmp"), nil, 0o644)
	if n, err := d.sweep("a"); err != nil || n != 1 {
		t.Fatalf("Sweep = %d, %v", n, err)
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
