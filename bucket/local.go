package bucket

// A local folder (file:// bucket) made as durable and as clean as the
// cloud stores. gocloud's fileblob renames a temporary file into place but
// never fsyncs it (after a power cut the object can exist, empty or torn),
// checks "if not exists" with a stat before the rename (two writers can
// both win), writes .attrs side files unless told not to, and leaves its
// temporary files behind when the process dies mid-write. So sgload writes
// local objects itself: a temporary file beside the target, written,
// fsynced, then renamed into place (or hard-linked, for create-if-absent:
// a link fails if the name exists), then the folders fsynced. A finished
// local file on the same file system (flush's Parquet files) is linked in
// rather than copied (UploadFile). Reads, listings and deletes stay with
// fileblob.

import (
	"bytes"
	"context"
	"crypto/md5"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"

	"gocloud.dev/blob"
	"gocloud.dev/blob/memblob"

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

// path is the file of key, as fileblob names it (so fileblob reads it
// back). Keys fileblob would escape are refused: sgload never makes them.
func (d folder) path(key string) (string, error) {
	bad := key == "" || strings.HasPrefix(key, "/") || strings.HasSuffix(key, "/") ||
		strings.Contains(key, "//") || strings.Contains(key, "../") || strings.HasSuffix(key, "/..") || key == ".." ||
		strings.ContainsFunc(key, func(r rune) bool { return r < 32 || r == '\\' })
	if bad {
		return "", fmt.Errorf("object key %q: not a plain relative path", key)
	}
	p := filepath.Join(d.root, filepath.FromSlash(key))
	if !strings.HasPrefix(p, filepath.Clean(d.root)+string(os.PathSeparator)) {
		return "", fmt.Errorf("object key %q escapes the bucket folder", key)
	}
	return p, nil
}

// write stores what r holds at key durably: when it returns nil, the object
// is whole on disk and survives a power cut; when it fails, nothing of it
// is visible (a temporary file may be left, for the sweep).
func (d folder) write(ctx context.Context, key string, r io.Reader, opts *blob.WriterOptions) (err error) {
	if opts == nil {
		opts = &blob.WriterOptions{}
	}
	p, tmp, err := d.tmpFor(key)
	if err != nil {
		return err
	}
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return fmt.Errorf("write %s: %w", key, err)
	}
	defer func() {
		if f != nil {
			_ = f.Close()
		}
		_ = os.Remove(tmp) // gone by rename, or unlinked after the link
	}()
	h := md5.New()
	if _, err := io.Copy(io.MultiWriter(f, h), r); err != nil {
		return fmt.Errorf("write %s: %w", key, err)
	}
	if len(opts.ContentMD5) > 0 && !bytes.Equal(h.Sum(nil), opts.ContentMD5) {
		return fmt.Errorf("write %s: content MD5 %x, expected %x", key, h.Sum(nil), opts.ContentMD5)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("fsync %s: %w", tmp, err)
	}
	err = f.Close()
	f = nil
	if err != nil {
		return fmt.Errorf("close %s: %w", tmp, err)
	}
	return d.place(ctx, key, tmp, p, opts.IfNotExist)
}

// tmpFor returns the path of key's object and a new temporary name beside
// it, its folders made.
func (d folder) tmpFor(key string) (p, tmp string, err error) {
	if p, err = d.path(key); err != nil {
		return "", "", err
	}
	if err := durable.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return "", "", err
	}
	var rnd [8]byte
	_, _ = rand.Read(rnd[:]) // crypto/rand does not fail on Linux
	return p, p + "." + hex.EncodeToString(rnd[:]) + durable.TmpSuffix, nil
}

// place gives the durable temporary file tmp its name p: renamed over any
// object there, or hard-linked when ifNotExist (a link fails if the name
// exists); then the folders are fsynced.
func (d folder) place(ctx context.Context, key, tmp, p string, ifNotExist bool) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("write %s: %w", key, err)
	}
	if ifNotExist {
		if err := os.Link(tmp, p); err != nil {
			if errors.Is(err, fs.ErrExist) {
				return &existsError{key: key}
			}
			return fmt.Errorf("write %s: %w", key, err)
		}
	} else if err := os.Rename(tmp, p); err != nil {
		return fmt.Errorf("write %s: %w", key, err)
	}
	return d.syncDirs(filepath.Dir(p))
}

// errOtherFileSystem: the file to link is not on the folder's file system.
var errOtherFileSystem = errors.New("not on the bucket folder's file system")

// link stores the finished local file src at key without copying it: a
// second name for the same bytes, fsynced, then placed as write places its
// temporary file. The caller must not change src afterwards (removing it
// is fine). ContentMD5 is not checked again: the bytes are the ones the
// caller hashed, not a copy of them.
func (d folder) link(ctx context.Context, key, src string, opts *blob.WriterOptions) error {
	p, tmp, err := d.tmpFor(key)
	if err != nil {
		return err
	}
	if err := os.Link(src, tmp); err != nil {
		if errors.Is(err, syscall.EXDEV) {
			return errOtherFileSystem
		}
		return fmt.Errorf("write %s: %w", key, err)
	}
	defer os.Remove(tmp) // gone by rename, or unlinked after the link
	f, err := os.Open(tmp)
	if err != nil {
		return fmt.Errorf("write %s: %w", key, err)
	}
	err = f.Sync()
	f.Close()
	if err != nil {
		return fmt.Errorf("fsync %s: %w", tmp, err)
	}
	return d.place(ctx, key, tmp, p, opts != nil && opts.IfNotExist)
}

// syncDirs fsyncs dir and every folder above it up to the root, so the new
// name (and any folder made for it) is on disk.
func (d folder) syncDirs(dir string) error {
	root := filepath.Clean(d.root)
	for ; ; dir = filepath.Dir(dir) {
		if err := durable.SyncDir(dir); err != nil {
			return err
		}
		if dir == root || len(dir) <= len(root) {
			return nil
		}
	}
}

// existsError is what a create-if-absent write of an existing key returns.
// gcerrors.Code says FailedPrecondition for it, as for every other store.
type existsError struct{ key string }

func (e *existsError) Error() string { return "write " + e.key + ": the object exists (IfNotExist)" }

// Unwrap is gocloud's own FailedPrecondition error: gcerrors.Code reads
// the code from an error type gocloud keeps internal, so the only way to
// have one is to be given one, here by an in-memory bucket, once.
func (e *existsError) Unwrap() error { return failedPrecondition() }

var failedPrecondition = sync.OnceValue(func() error {
	ctx := context.Background()
	b := memblob.OpenBucket(nil)
	defer b.Close()
	_ = b.WriteAll(ctx, "k", nil, nil)
	return b.WriteAll(ctx, "k", nil, &blob.WriterOptions{IfNotExist: true})
})

// sweep removes temporary files (<object>.<hex>.tmp) under prefix, left by
// a process that died mid-write. It returns how many it removed.
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
		if !e.IsDir() && strings.HasSuffix(p, durable.TmpSuffix) {
			if err := os.Remove(p); err != nil {
				return err
			}
			n++
		}
		return nil
	})
	return n, err
}
