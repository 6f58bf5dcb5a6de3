package loader

import (
	"bytes"
	"context"
	"crypto/md5"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"

	"github.com/parquet-go/parquet-go"
	"gocloud.dev/blob"
	"gocloud.dev/gcerrors"

	"github.com/sgload/sgload/bucket"
	"github.com/sgload/sgload/layout"
	"github.com/sgload/sgload/spool"
)

// VerifyOptions configure Verify.
type VerifyOptions struct {
	// Spool, when its Root is set, is reconciled too: its committed
	// segments against the manifests of its node.
	Spool  spool.Dir
	Node   string
	Bucket *bucket.Bucket
	Prefix string
}

// VerifyReport is what Verify found. Problems is empty when everything
// reconciles.
type VerifyReport struct {
	Manifests int                         `json:"manifests"`
	Files     int                         `json:"files"`
	Rows      int64                       `json:"rows"`
	Bytes     int64                       `json:"bytes"`
	Segments  int                         `json:"segments_checked"`
	Tables    map[string]map[string]int64 `json:"tables"` // table -> dt -> rows, from the files' footers
	Problems  []string                    `json:"problems"`
}

func (r *VerifyReport) problem(format string, args ...any) {
	r.Problems = append(r.Problems, fmt.Sprintf(format, args...))
}

// Verify reconciles manifests, the objects in the bucket (existence, size,
// MD5, Parquet row counts) and, with a spool, the committed segments.
func Verify(ctx context.Context, o VerifyOptions) (*VerifyReport, error) {
	rep := &VerifyReport{Tables: map[string]map[string]int64{}, Problems: []string{}}
	keys, err := layout.ListManifests(ctx, o.Bucket, o.Prefix)
	if err != nil {
		return nil, err
	}
	owner := map[string]string{} // object key -> manifest
	manifests := map[string]*layout.Manifest{}
	for _, k := range keys {
		m, err := layout.ReadManifest(ctx, o.Bucket, k)
		if err != nil {
			rep.problem("manifest %s cannot be read: %v", k, err)
			continue
		}
		rep.Manifests++
		manifests[k] = m
		var rows int64
		for _, f := range m.Files {
			if prev, dup := owner[f.Key]; dup {
				rep.problem("object %s is listed by two manifests: %s and %s", f.Key, prev, k)
			}
			owner[f.Key] = k
			n, err := checkObject(ctx, o.Bucket, f)
			if err != nil {
				rep.problem("%s (manifest %s): %v", f.Key, k, err)
				continue
			}
			rep.Files++
			rep.Rows += n
			rep.Bytes += f.Bytes
			rows += n
			if rep.Tables[f.Table] == nil {
				rep.Tables[f.Table] = map[string]int64{}
			}
			rep.Tables[f.Table][f.Date] += n
		}
		if rows != m.Rows {
			rep.problem("manifest %s says %d rows, its files hold %d", k, m.Rows, rows)
		}
		if got := m.Rows + m.Duplicates.Total() + m.QuarantinedEvents; got != m.Events {
			rep.problem("manifest %s: %d events in, but %d rows + %d duplicates + %d quarantined = %d",
				k, m.Events, m.Rows, m.Duplicates.Total(), m.QuarantinedEvents, got)
		}
	}
	// Every Parquet object must belong to a manifest: anything else would be
	// read twice by a warehouse that globs the folders.
	for _, dir := range []string{layout.EventsDir, layout.ObjectsDir} {
		it := o.Bucket.List(&blob.ListOptions{Prefix: layout.Join(o.Prefix, dir) + "/"})
		for {
			obj, err := it.Next(ctx)
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				return nil, fmt.Errorf("list objects: %w", err)
			}
			if _, ok := owner[obj.Key]; !ok && !obj.IsDir {
				rep.problem("object %s is in no manifest (left by an uncommitted flush?)", obj.Key)
			}
		}
	}
	if o.Spool.Root != "" {
		if err := verifySpool(o, manifests, rep); err != nil {
			return nil, err
		}
	}
	sort.Strings(rep.Problems)
	return rep, nil
}

// checkObject compares an object with its manifest entry and returns the
// row count in its footer.
func checkObject(ctx context.Context, b *bucket.Bucket, f layout.File) (int64, error) {
	attrs, err := b.Attributes(ctx, f.Key)
	if gcerrors.Code(err) == gcerrors.NotFound {
		return 0, errors.New("missing from the bucket")
	}
	if err != nil {
		return 0, err
	}
	if attrs.Size != f.Bytes {
		return 0, fmt.Errorf("size %d, manifest says %d", attrs.Size, f.Bytes)
	}
	sum := attrs.MD5
	if len(sum) == 0 { // not every store reports one: hash the bytes
		r, err := b.NewReader(ctx, f.Key, nil)
		if err != nil {
			return 0, err
		}
		h := md5.New()
		_, err = io.Copy(h, r)
		_ = r.Close()
		if err != nil {
			return 0, err
		}
		sum = h.Sum(nil)
	}
	if !bytes.Equal(sum, f.MD5) {
		return 0, fmt.Errorf("MD5 %x, manifest says %x", sum, f.MD5)
	}
	pf, err := parquet.OpenFile(&blobReaderAt{ctx: ctx, b: b, key: f.Key}, attrs.Size,
		parquet.SkipPageIndex(true), parquet.SkipBloomFilters(true))
	if err != nil {
		return 0, fmt.Errorf("read Parquet footer: %w", err)
	}
	if n := pf.NumRows(); n != f.Rows {
		return n, fmt.Errorf("footer has %d rows, manifest says %d", n, f.Rows)
	}
	return pf.NumRows(), nil
}

type blobReaderAt struct {
	ctx context.Context
	b   *bucket.Bucket
	key string
}

func (r *blobReaderAt) ReadAt(p []byte, off int64) (int, error) {
	rr, err := r.b.NewRangeReader(r.ctx, r.key, off, int64(len(p)), nil)
	if err != nil {
		return 0, err
	}
	defer rr.Close()
	return io.ReadFull(rr, p)
}

func verifySpool(o VerifyOptions, manifests map[string]*layout.Manifest, rep *VerifyReport) error {
	l := o.Spool
	node, err := l.Node(o.Node)
	if err != nil {
		return err
	}
	plans, err := (journal{dir: l.FlushJournal()}).pending()
	if err != nil {
		return err
	}
	for _, p := range plans {
		rep.problem("plan %s is unfinished: run sgload flush to finish it", p.ID)
	}
	committed := map[string]layout.ManifestSegment{} // segment path -> stats
	for k, m := range manifests {
		if m.Node != node {
			continue
		}
		for _, s := range m.Segments {
			if _, dup := committed[s.Path]; dup {
				rep.problem("segment %s is in two manifests (one is %s)", s.Path, k)
			}
			committed[s.Path] = s
		}
	}
	return l.WalkDone(func(p, rel string, _ os.DirEntry) error {
		s, ok := committed[rel]
		if !ok {
			rep.problem("done/%s is in no manifest of node %s", rel, node)
			return nil
		}
		records, events, err := spool.Count(p)
		if err != nil {
			rep.problem("done/%s: %v", rel, err)
			return nil
		}
		rep.Segments++
		if records != s.Records || events != s.Events {
			rep.problem("done/%s holds %d records / %d events, its manifest says %d / %d", rel, records, events, s.Records, s.Events)
		}
		return nil
	})
}
