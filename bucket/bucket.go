// Package bucket opens the stores sgload writes to: any gocloud.dev/blob
// URL (s3://, gs://, azblob://, file://, mem://) or a plain folder path, as
// one type that every command and package shares. Cloud stores are used as
// gocloud opens them; a local folder gets what gocloud's fileblob lacks
// (local.go): objects and their folders fsynced, no .attrs side files, and
// a sweep of the temporary files a killed write leaves.
//
// The drivers are registered by whoever imports them (cmd/sgload, and the
// test helpers), not here.
package bucket

import (
	"context"
	"fmt"
	"io"
	"net/url"
	"os"

	"gocloud.dev/blob"
)

// Bucket is an open destination store.
type Bucket struct {
	*blob.Bucket
	url   string
	local *folder // a local folder's durability; nil for other stores
}

// Open opens the bucket at raw: a gocloud URL or a local folder path (made
// if missing). A mistyped URL (s3:/acme) is refused with ErrBadURL, and a
// cloud URL with no credentials in the environment with ErrNoCredentials,
// both as *HintError.
func Open(ctx context.Context, raw string) (*Bucket, error) { return open(ctx, raw, true) }

// OpenExisting is Open for readers (views, verify, status): a local folder
// must exist already (ErrNoFolder), so a mistyped path is an error instead
// of a new empty folder.
func OpenExisting(ctx context.Context, raw string) (*Bucket, error) { return open(ctx, raw, false) }

func open(ctx context.Context, raw string, create bool) (*Bucket, error) {
	if err := checkURL(raw); err != nil {
		return nil, err
	}
	u, root, err := Normalize(raw)
	if err != nil {
		return nil, err
	}
	pu, err := url.Parse(u)
	if err != nil {
		return nil, fmt.Errorf("bucket URL %q: %w", raw, err)
	}
	if err := checkCredentials(pu); err != nil {
		return nil, err
	}
	if root != "" && !create {
		if st, err := os.Stat(root); err != nil || !st.IsDir() {
			return nil, &HintError{Err: fmt.Errorf("%w: %s", ErrNoFolder, root),
				Hint: "check --bucket: the folder flush writes to (flush creates it)"}
		}
		q := pu.Query()
		q.Del("create_dir")
		pu.RawQuery = q.Encode()
		u = pu.String()
	}
	b, err := blob.OpenBucket(ctx, u)
	if err != nil {
		return nil, fmt.Errorf("open bucket %s: %w", raw, err)
	}
	ob := &Bucket{Bucket: b, url: raw}
	if root != "" {
		ob.local = &folder{root: root}
	}
	return ob, nil
}

// URL is the bucket as it was given, for messages and manifests.
func (b *Bucket) URL() string { return b.url }

// Root is the folder of a local bucket, "" for other stores.
func (b *Bucket) Root() string {
	if b.local == nil {
		return ""
	}
	return b.local.root
}

// WriteAll writes an object; in a local folder it is on disk when WriteAll
// returns, as it is in a cloud store.
func (b *Bucket) WriteAll(ctx context.Context, key string, p []byte, opts *blob.WriterOptions) error {
	if err := b.Bucket.WriteAll(ctx, key, p, opts); err != nil {
		return err
	}
	return b.synced(ctx, key)
}

// Upload streams r into an object, durably as WriteAll. Upload (not
// NewWriter) is the path gocloud's drivers stream as multipart or
// resumable uploads.
func (b *Bucket) Upload(ctx context.Context, key string, r io.Reader, opts *blob.WriterOptions) error {
	if err := b.Bucket.Upload(ctx, key, r, opts); err != nil {
		return err
	}
	return b.synced(ctx, key)
}

func (b *Bucket) synced(ctx context.Context, key string) error {
	if b.local == nil {
		return nil
	}
	return b.local.afterWrite(ctx, key)
}

// Sweep removes what killed writes left under prefix (a local folder's
// temporary files) and returns how many; other stores need nothing. Call it
// only where no other writer can be at work (flush holds the spool lock).
func (b *Bucket) Sweep(prefix string) (int, error) {
	if b.local == nil {
		return 0, nil
	}
	return b.local.sweep(prefix)
}

// Download copies the object at key into a new local file at path and
// returns its size. Readers that seek a lot (a Parquet footer, then its
// pages) read the local copy instead of making a request per read.
func (b *Bucket) Download(ctx context.Context, key, path string) (int64, error) {
	r, err := b.NewReader(ctx, key, nil)
	if err != nil {
		return 0, err
	}
	defer r.Close()
	f, err := os.Create(path)
	if err != nil {
		return 0, err
	}
	n, err := io.Copy(f, r)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		_ = os.Remove(path)
		return 0, fmt.Errorf("download %s: %w", key, err)
	}
	return n, nil
}
