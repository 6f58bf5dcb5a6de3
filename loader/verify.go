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
	"strings"

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
	Rewrites  int                         `json:"rewrites"`
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
// MD5, Parquet row counts) and, with a spool, the committed segments. It
// follows rewrites (compaction, retention, erasure): a file a committed
// rewrite replaced may be gone; a rewrite's rows must add up (in = out +
// duplicates + removed), and its outputs are checked like flush's files.
func Verify(ctx context.Context, o VerifyOptions) (*VerifyReport, error) {
	rep := &VerifyReport{Tables: map[string]map[string]int64{}, Problems: []string{}}
	keys, err := layout.ListManifests(ctx, o.Bucket, o.Prefix)
	if err != nil {
		return nil, err
	}
	rewrites, active, err := readRewrites(ctx, o)
	if err != nil {
		return nil, err
	}
	// replacedBy: every file a rewrite replaced, and by which; a replaced
	// file must be gone once its rewrite is finished (done/).
	replacedBy := map[string]*layout.Rewrite{}
	inputRows := map[string]int64{}
	for _, r := range rewrites {
		for _, in := range r.Inputs {
			if prev, dup := replacedBy[in.Key]; dup {
				rep.problem("object %s is replaced by two rewrites: %s and %s", in.Key, prev.ID, r.ID)
			}
			replacedBy[in.Key] = r
			inputRows[in.Key] = in.Rows
		}
	}
	owner := map[string]string{} // object key -> the manifest that wrote it
	manifests := map[string]*layout.Manifest{}
	check := func(f layout.File, by string) {
		if prev, dup := owner[f.Key]; dup {
			rep.problem("object %s is listed by two manifests: %s and %s", f.Key, prev, by)
		}
		owner[f.Key] = by
		if n, ok := inputRows[f.Key]; ok && n != f.Rows {
			rep.problem("%s holds %d rows per %s, but a rewrite read %d from it", f.Key, f.Rows, by, n)
		}
		if _, gone := replacedBy[f.Key]; gone {
			return // replaced: present during the grace, then deleted
		}
		n, err := checkObject(ctx, o.Bucket, f)
		if err != nil {
			rep.problem("%s (manifest %s): %v", f.Key, by, err)
			return
		}
		rep.Files++
		rep.Rows += n
		rep.Bytes += f.Bytes
		if rep.Tables[f.Table] == nil {
			rep.Tables[f.Table] = map[string]int64{}
		}
		rep.Tables[f.Table][f.Date] += n
	}
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
			rows += f.Rows
			check(f, k)
		}
		if rows != m.Rows {
			rep.problem("manifest %s says %d rows, its files %d", k, m.Rows, rows)
		}
		if got := m.Rows + m.Duplicates.Total() + m.QuarantinedEvents + m.Skipped; got != m.Events {
			rep.problem("manifest %s: %d events in, but %d rows + %d duplicates + %d quarantined + %d skipped = %d",
				k, m.Events, m.Rows, m.Duplicates.Total(), m.QuarantinedEvents, m.Skipped, got)
		}
	}
	for _, r := range rewrites {
		rep.Rewrites++
		by := "rewrite " + r.ID
		var in, out int64
		for _, f := range r.Inputs {
			in += f.Rows
			if _, known := owner[f.Key]; !known {
				rep.problem("%s replaced %s, which no manifest wrote", by, f.Key)
			}
		}
		for _, f := range r.Outputs {
			out += f.Rows
			check(f, by)
		}
		if in != r.RowsIn || out != r.RowsOut || r.RowsIn != r.RowsOut+r.Duplicates+r.Removed {
			rep.problem("%s: %d rows in (inputs: %d), %d out (outputs: %d), %d duplicates, %d removed: they do not add up",
				by, r.RowsIn, in, r.RowsOut, out, r.Duplicates, r.Removed)
		}
	}
	// Every Parquet object must be committed and not replaced by a finished
	// rewrite: anything else would be read twice, or by mistake, by a
	// warehouse that globs the folders.
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
			if obj.IsDir {
				continue
			}
			if _, ok := owner[obj.Key]; !ok {
				rep.problem("object %s is in no manifest (left by an uncommitted flush or rewrite?)", obj.Key)
			} else if r, gone := replacedBy[obj.Key]; gone && !active[r.ID] {
				rep.problem("object %s was replaced by finished rewrite %s but is still there", obj.Key, r.ID)
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

// readRewrites reads every rewrite manifest, finished or not, in commit
// order; active names the unfinished ones.
func readRewrites(ctx context.Context, o VerifyOptions) ([]*layout.Rewrite, map[string]bool, error) {
	active := map[string]bool{}
	var out []*layout.Rewrite
	for _, dir := range []string{layout.RewritesDoneDir, layout.RewritesDir} {
		it := o.Bucket.List(&blob.ListOptions{Prefix: layout.Join(o.Prefix, dir) + "/", Delimiter: "/"})
		for {
			obj, err := it.Next(ctx)
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				return nil, nil, fmt.Errorf("list rewrites: %w", err)
			}
			if obj.IsDir || !strings.HasSuffix(obj.Key, ".json") {
				continue
			}
			r, err := layout.ReadRewrite(ctx, o.Bucket, obj.Key)
			if err != nil {
				return nil, nil, err
			}
			if dir == layout.RewritesDir {
				active[r.ID] = true
			}
			out = append(out, r)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, active, nil
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
	pf, err := parquet.OpenFile(b.ReaderAt(ctx, f.Key), attrs.Size,
		parquet.SkipPageIndex(true), parquet.SkipBloomFilters(true))
	if err != nil {
		return 0, fmt.Errorf("read Parquet footer: %w", err)
	}
	if n := pf.NumRows(); n != f.Rows {
		return n, fmt.Errorf("footer has %d rows, manifest says %d", n, f.Rows)
	}
	return pf.NumRows(), nil
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
	replayed := map[string]layout.ManifestSegment{}  // the same from replays, for destinations flush never wrote to
	for k, m := range manifests {
		if m.Node != node {
			continue
		}
		for _, s := range m.Segments {
			if m.Kind != "" {
				replayed[s.Path] = s
				continue
			}
			if _, dup := committed[s.Path]; dup {
				rep.problem("segment %s is in two manifests (one is %s)", s.Path, k)
			}
			committed[s.Path] = s
		}
	}
	for p, s := range replayed {
		if _, ok := committed[p]; !ok {
			committed[p] = s
		}
	}
	// Erasures (sgload forget) took records and events from committed
	// segments after their manifests counted them.
	erased, err := l.CommittedChanges()
	if err != nil {
		return err
	}
	return l.WalkDone(func(p, rel string, _ os.DirEntry) error {
		s, ok := committed[rel]
		s.Records -= erased[rel].Records
		s.Events -= erased[rel].Events
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
