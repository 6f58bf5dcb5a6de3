package rewrite

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/sgload/sgload/bucket"
	"github.com/sgload/sgload/parquetfile"
	"github.com/sgload/sgload/schema"
)

// input is an input object downloaded to the work folder and open for
// reading; close removes the local copy.
type input struct {
	*parquetfile.Reader
	f    *os.File
	Size int64
}

// openInput downloads key to the work folder's one input file and opens it
// as a table t file.
func openInput(ctx context.Context, b *bucket.Bucket, key, dir string, t *schema.Table) (*input, error) {
	local := filepath.Join(dir, "input.parquet")
	size, err := b.Download(ctx, key, local)
	if err != nil {
		return nil, err
	}
	f, err := os.Open(local)
	if err != nil {
		return nil, err
	}
	r, err := parquetfile.OpenReader(f, size, t)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("%s: %w", key, err)
	}
	return &input{Reader: r, f: f, Size: size}, nil
}

func (in *input) close() {
	in.f.Close()
	_ = os.Remove(in.f.Name())
}
