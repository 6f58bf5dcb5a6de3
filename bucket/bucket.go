// Package bucket opens the stores sgload writes to: any gocloud.dev/blob
// URL (s3://, gs://, azblob://, file://, mem://) or a plain folder path, as
// one type that every command and package shares. Cloud stores are used as
// gocloud opens them, with a deadline on every request (a store that stops
// answering fails the request with ErrStalled instead of holding it
// forever); a local folder gets what gocloud's fileblob lacks (local.go):
// each object written, fsynced, then renamed into place, its folders
// fsynced, no .attrs side files, atomic create-if-absent, and a sweep of the
// temporary files a killed write leaves.
//
// Errors never quote the credentials a bucket URL may carry.
//
// The drivers are registered by whoever imports them (cmd/sgload, and the
// test helpers), not here.
package bucket

import (
	"bytes"
	"context"
	"crypto/md5"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"time"

	"gocloud.dev/blob"

	"github.com/sgload/sgload/internal/redact"
	"github.com/sgload/sgload/internal/watchdog"
)

// DefaultTimeout is how long a request to the store may go without progress.
const DefaultTimeout = 2 * time.Minute

// ErrStalled is in the chain of an error from a request that made no
// progress for the bucket's Timeout: the store stopped answering.
var ErrStalled = watchdog.ErrStalled

// Bucket is an open destination store. Its methods shadow those of the
// embedded *blob.Bucket that sgload uses, adding the deadline and, for a
// local folder, the durability.
type Bucket struct {
	*blob.Bucket
	url     string
	secrets []string // the parts of url that are credentials
	local   *folder  // a local folder's durability; nil for other stores

	// Timeout bounds each request to the store: a small request must end
	// within it, a streaming one (upload, read) must make progress at least
	// that often (DefaultTimeout).
	Timeout time.Duration
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
	secrets := redact.Credentials(raw)
	if err := checkURL(raw); err != nil {
		return nil, redact.Scrub(err, secrets...)
	}
	u, root, err := Normalize(raw)
	if err != nil {
		return nil, redact.Scrub(err, secrets...)
	}
	pu, err := url.Parse(u)
	if err != nil {
		return nil, fmt.Errorf("bucket URL %q: %w", redact.URL(raw), redact.Scrub(err, secrets...))
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
		return nil, fmt.Errorf("open bucket %s: %w", redact.URL(raw), redact.Scrub(err, secrets...))
	}
	ob := &Bucket{Bucket: b, url: raw, secrets: secrets, Timeout: DefaultTimeout}
	if root != "" {
		ob.local = &folder{root: root}
	}
	return ob, nil
}

// URL is the bucket as it was given, credentials and all: it opens the
// same bucket again. Never print it; print Redacted.
func (b *Bucket) URL() string { return b.url }

// Redacted is the bucket's URL with any credentials in it masked: for
// messages.
func (b *Bucket) Redacted() string { return redact.URL(b.url) }

// Root is the folder of a local bucket, "" for other stores.
func (b *Bucket) Root() string {
	if b.local == nil {
		return ""
	}
	return b.local.root
}

func (b *Bucket) timeout() time.Duration {
	if b.Timeout <= 0 {
		return DefaultTimeout
	}
	return b.Timeout
}

// call runs one small request with the deadline.
func (b *Bucket) call(ctx context.Context, fn func(context.Context) error) error {
	ctx, dog := watchdog.New(ctx, b.timeout())
	defer dog.Stop()
	return b.scrub(dog.Err(fn(ctx)))
}

func (b *Bucket) scrub(err error) error { return redact.Scrub(err, b.secrets...) }

// WriteAll writes an object; in a local folder it is on disk when WriteAll
// returns, as it is in a cloud store.
func (b *Bucket) WriteAll(ctx context.Context, key string, p []byte, opts *blob.WriterOptions) error {
	if b.local != nil {
		o := blob.WriterOptions{}
		if opts != nil {
			o = *opts
		}
		if len(o.ContentMD5) == 0 {
			sum := md5.Sum(p)
			o.ContentMD5 = sum[:]
		}
		return b.local.write(ctx, key, bytes.NewReader(p), &o)
	}
	return b.call(ctx, func(ctx context.Context) error { return b.Bucket.WriteAll(ctx, key, p, opts) })
}

// Upload streams r into an object, durably as WriteAll. Upload (not
// NewWriter) is the path gocloud's drivers stream as multipart or
// resumable uploads. It fails with ErrStalled when the store takes no
// bytes, or does not answer after the last, for the bucket's Timeout.
func (b *Bucket) Upload(ctx context.Context, key string, r io.Reader, opts *blob.WriterOptions) error {
	if b.local != nil {
		return b.local.write(ctx, key, r, opts)
	}
	ctx, dog := watchdog.New(ctx, b.timeout())
	defer dog.Stop()
	return b.scrub(dog.Err(b.Bucket.Upload(ctx, key, dog.Reader(r), opts)))
}

// UploadFile stores the finished local file at path as key. Into a local
// folder on the same file system the file is fsynced and linked into place
// instead of copied, so the caller must not change it afterwards (removing
// it is fine); elsewhere it is uploaded as Upload does.
func (b *Bucket) UploadFile(ctx context.Context, key, path string, opts *blob.WriterOptions) error {
	if b.local != nil {
		if err := b.local.link(ctx, key, path, opts); !errors.Is(err, errOtherFileSystem) {
			return err
		}
	}
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	return b.Upload(ctx, key, f, opts)
}

// ReadAll reads an object whole.
func (b *Bucket) ReadAll(ctx context.Context, key string) ([]byte, error) {
	r, err := b.NewReader(ctx, key, nil)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	return io.ReadAll(r)
}

// Delete deletes an object.
func (b *Bucket) Delete(ctx context.Context, key string) error {
	return b.call(ctx, func(ctx context.Context) error { return b.Bucket.Delete(ctx, key) })
}

// Attributes reads an object's attributes.
func (b *Bucket) Attributes(ctx context.Context, key string) (a *blob.Attributes, err error) {
	err = b.call(ctx, func(ctx context.Context) error {
		a, err = b.Bucket.Attributes(ctx, key)
		return err
	})
	return a, err
}

// Exists reports whether an object exists.
func (b *Bucket) Exists(ctx context.Context, key string) (ok bool, err error) {
	err = b.call(ctx, func(ctx context.Context) error {
		ok, err = b.Bucket.Exists(ctx, key)
		return err
	})
	return ok, err
}

// ListPage lists one page.
func (b *Bucket) ListPage(ctx context.Context, token []byte, size int, opts *blob.ListOptions) (objs []*blob.ListObject, next []byte, err error) {
	err = b.call(ctx, func(ctx context.Context) error {
		objs, next, err = b.Bucket.ListPage(ctx, token, size, opts)
		return err
	})
	return objs, next, err
}

// List lists objects; each Next that fetches a page has the deadline.
func (b *Bucket) List(opts *blob.ListOptions) *ListIterator {
	return &ListIterator{b: b, it: b.Bucket.List(opts)}
}

// ListIterator iterates over a listing (blob.ListIterator with deadlines).
type ListIterator struct {
	b  *Bucket
	it *blob.ListIterator
}

// Next returns the next object, or io.EOF at the end.
func (l *ListIterator) Next(ctx context.Context) (obj *blob.ListObject, err error) {
	err = l.b.call(ctx, func(ctx context.Context) error {
		obj, err = l.it.Next(ctx)
		return err
	})
	if errors.Is(err, io.EOF) {
		return nil, io.EOF
	}
	return obj, err
}

// NewReader opens an object for reading.
func (b *Bucket) NewReader(ctx context.Context, key string, opts *blob.ReaderOptions) (*Reader, error) {
	return b.NewRangeReader(ctx, key, 0, -1, opts)
}

// NewRangeReader opens part of an object for reading. Opening and every
// read must make progress within the bucket's Timeout.
func (b *Bucket) NewRangeReader(ctx context.Context, key string, off, length int64, opts *blob.ReaderOptions) (*Reader, error) {
	ctx, dog := watchdog.New(ctx, b.timeout())
	r, err := b.Bucket.NewRangeReader(ctx, key, off, length, opts)
	if err != nil {
		dog.Stop()
		return nil, b.scrub(dog.Err(err))
	}
	dog.Kick()
	return &Reader{br: r, b: b, dog: dog, r: dog.Reader(r)}, nil
}

// Reader reads an object (a blob.Reader watched for stalls).
type Reader struct {
	br  *blob.Reader
	b   *Bucket
	dog *watchdog.Watchdog
	r   io.Reader
}

// Read reads the object.
func (r *Reader) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	if err != nil && err != io.EOF {
		err = r.b.scrub(r.dog.Err(err))
	}
	return n, err
}

// Size is the object's size.
func (r *Reader) Size() int64 { return r.br.Size() }

// Close ends the read.
func (r *Reader) Close() error {
	defer r.dog.Stop()
	return r.br.Close()
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

// ReaderAt reads the object at key in ranges, one request a call: for
// readers such as Parquet's that want a footer and a few column chunks, not
// the whole object.
func (b *Bucket) ReaderAt(ctx context.Context, key string) io.ReaderAt {
	return &readerAt{ctx: ctx, b: b, key: key}
}

type readerAt struct {
	ctx context.Context
	b   *Bucket
	key string
}

func (r *readerAt) ReadAt(p []byte, off int64) (int, error) {
	rr, err := r.b.NewRangeReader(r.ctx, r.key, off, int64(len(p)), nil)
	if err != nil {
		return 0, err
	}
	defer rr.Close()
	return io.ReadFull(rr, p)
}
