package bucket

// A local folder (file:// bucket) made as durable and as clean as the
// cloud stores: gocloud's fileblob renames a temporary file into place but
// never fsyncs it, writes .attrs side files unless told not to, and leaves
// its temporary files behind when the process dies mid-write.

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"github.com/sgload/sgload/internal/durable"
)

// Normalize turns a local path into a file:// URL and sets the fileblob
// options sgload needs: temporary files beside their target (same file
// system, so the rename is atomic), no .attrs side files, and the folder
// created if missing. Other URLs come back unchanged. root is the folder
// for file:// URLs, "" otherwise.
func Normalize(raw string) (u string, root string, err error) {
	if !strings.Contains(raw, "://") {
		abs, err := filepath.Abs(raw)
		if err != nil {
			return "", "", err
		}
		raw = "file://" + filepath.ToSlash(abs)
	}
	p, err := url.Parse(raw)
	if err != nil {
		return "", "", fmt.Errorf("bucket URL %q: %w", raw, err)
	}
	if p.Scheme != "file" {
		return raw, "", nil
	}
	if p.Host != "" && p.Host != "localhost" {
		return "", "", fmt.Errorf("bucket URL %q: use file:///absolute/path (three slashes) or a plain path", raw)
	}
	q := p.Query()
	for k, v := range map[string]string{"no_tmp_dir": "1", "metadata": "skip", "create_dir": "1"} {
		if q.Get(k) == "" {
			q.Set(k, v)
		}
	}
	p.RawQuery = q.Encode()
	return p.String(), filepath.FromSlash(p.Path), nil
}

// folder makes the writes to a local folder durable.
type folder struct{ root string }

// afterWrite fsyncs the object and every folder from it up to the root, so
// an object counted as written survives a power cut.
func (d folder) afterWrite(_ context.Context, key string) error {
	p := filepath.Join(d.root, filepath.FromSlash(key))
	f, err := os.Open(p)
	if err != nil {
		return fmt.Errorf("fsync %s: %w", p, err)
	}
	err = f.Sync()
	_ = f.Close()
	if err != nil {
		return fmt.Errorf("fsync %s: %w", p, err)
	}
	root := filepath.Clean(d.root)
	for dir := filepath.Dir(p); ; dir = filepath.Dir(dir) {
		if err := durable.SyncDir(dir); err != nil {
			return err
		}
		if dir == root || len(dir) <= len(root) {
			return nil
		}
	}
}

// sweep removes fileblob temporary files (<object>.<hex>.tmp) under prefix,
// left by a process that died mid-write. It returns how many it removed.
func (d folder) sweep(prefix string) (int, error) {
	base := filepath.Join(d.root, filepath.FromSlash(prefix))
	n := 0
	err := filepath.WalkDir(base, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if !e.IsDir() && strings.HasSuffix(p, ".tmp") {
			if err := os.Remove(p); err != nil {
				return err
			}
			n++
		}
		return nil
	})
	return n, err
}
