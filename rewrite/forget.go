package rewrite

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/valyala/fastjson"
	"gocloud.dev/blob"
	"gocloud.dev/gcerrors"

	"github.com/sgload/sgload/layout"
	"github.com/sgload/sgload/parquetfile"
	"github.com/sgload/sgload/schema"
	"github.com/sgload/sgload/spool"
)

// Matcher finds the rows and events that hold one of a set of email
// addresses, anywhere: in any text column, in _raw, in custom args, in a
// URL, in whatever case, and behind JSON escapes.
type Matcher struct {
	addrs   [][]byte // lower case
	scratch []byte
	p       fastjson.Parser
}

// NewMatcher matches the given addresses.
func NewMatcher(addresses []string) (*Matcher, error) {
	m := &Matcher{}
	for _, a := range addresses {
		a = strings.ToLower(strings.TrimSpace(a))
		if a == "" {
			continue
		}
		if !strings.Contains(a, "@") {
			return nil, fmt.Errorf("%q is not an email address", a)
		}
		m.addrs = append(m.addrs, []byte(a))
	}
	if len(m.addrs) == 0 {
		return nil, errors.New("no address to forget")
	}
	return m, nil
}

// Text reports whether b holds one of the addresses. JSON text is also read
// decoded, so an address written with escapes (\u0040) is found too.
func (m *Matcher) Text(b []byte) bool {
	if m.contains(b) {
		return true
	}
	if bytes.IndexByte(b, '\\') < 0 || (len(b) > 0 && b[0] != '{' && b[0] != '[' && b[0] != '"') {
		return false
	}
	v, err := m.p.ParseBytes(b)
	if err != nil {
		return false
	}
	return m.value(v)
}

func (m *Matcher) value(v *fastjson.Value) bool {
	switch v.Type() {
	case fastjson.TypeString:
		return m.contains(v.GetStringBytes())
	case fastjson.TypeArray:
		arr, _ := v.Array()
		for _, it := range arr {
			if m.value(it) {
				return true
			}
		}
	case fastjson.TypeObject:
		o, _ := v.Object()
		found := false
		o.Visit(func(k []byte, x *fastjson.Value) {
			found = found || m.contains(k) || m.value(x)
		})
		return found
	}
	return false
}

func (m *Matcher) contains(b []byte) bool {
	m.scratch = append(m.scratch[:0], b...)
	for i, c := range m.scratch {
		if c >= 'A' && c <= 'Z' {
			m.scratch[i] = c + 'a' - 'A'
		}
	}
	for _, a := range m.addrs {
		if bytes.Contains(m.scratch, a) {
			return true
		}
	}
	return false
}

// Row reports whether row r of b holds one of the addresses in any text
// column.
func (m *Matcher) Row(b *schema.Batch, r int) bool {
	for i, c := range b.Table.Columns {
		col := b.Column(i)
		if !col.Valid[r] {
			continue
		}
		switch c.Kind {
		case schema.String:
			if m.Text(col.StringAt(r)) {
				return true
			}
		case schema.StringList:
			for _, it := range col.ListAt(r) {
				if m.Text(it) {
					return true
				}
			}
		}
	}
	return false
}

// Audit is the record of an erasure: it names no address, only a salted
// hash of each (so a later request for the same address can be matched to
// it by whoever holds the address) and what was removed.
type Audit struct {
	ID     string          `json:"id"`
	At     time.Time       `json:"at"`
	Salt   string          `json:"salt"`
	Hashes []string        `json:"address_sha256"`
	Bucket *ForgetSummary  `json:"bucket,omitempty"`
	Spool  *spool.Scrubbed `json:"spool,omitempty"`
	Sgload string          `json:"sgload_version"`
}

// NewAudit starts the audit record of forgetting addresses.
func NewAudit(addresses []string, now time.Time, version string) *Audit {
	var salt [16]byte
	_, _ = rand.Read(salt[:]) // crypto/rand does not fail on Linux
	a := &Audit{ID: layout.NewRewriteID(now), At: now.UTC(), Salt: hex.EncodeToString(salt[:]), Sgload: version}
	for _, addr := range addresses {
		h := sha256.Sum256(append(salt[:], strings.ToLower(strings.TrimSpace(addr))...))
		a.Hashes = append(a.Hashes, hex.EncodeToString(h[:]))
	}
	sort.Strings(a.Hashes)
	return a
}

// AuditKey is where the bucket keeps an erasure's audit record.
func AuditKey(prefix, id string) string {
	return layout.Join(prefix, layout.MetaDir, "forget", id+".json")
}

// JSON is the audit record as written.
func (a *Audit) JSON() []byte {
	b, _ := json.MarshalIndent(a, "", "  ")
	return append(b, '\n')
}

// ForgetSummary is what an erasure removed from the bucket.
type ForgetSummary struct {
	FilesScanned   int              `json:"files_scanned"`
	FilesRewritten int              `json:"files_rewritten"`
	FilesDeleted   int              `json:"replaced_files_deleted"`
	RowsRemoved    int64            `json:"rows_removed"`
	Tables         map[string]int64 `json:"rows_removed_by_table"`
	Rewrites       []string         `json:"rewrites"`
}

// Forget removes every row holding one of m's addresses from every file
// under the prefix: live files are rewritten without those rows (committed
// as rewrites of kind forget, whose inputs are deleted at once, with no
// grace); files a rewrite already replaced and that hold an address are
// deleted now. It writes audit's record in the bucket.
func Forget(ctx context.Context, o Options, m *Matcher, audit *Audit) (*ForgetSummary, error) {
	o.defaults()
	o.Grace = 0
	fs := &ForgetSummary{Tables: map[string]int64{}, Rewrites: []string{}}
	rw := &rewriter{o: o, sum: &Summary{Rewrites: []string{}}, start: o.Now()}
	var err error
	if rw.cat, err = layout.LoadCatalog(ctx, o.Bucket, o.Prefix); err != nil {
		return fs, err
	}
	folders, err := layout.PartitionFiles(ctx, o.Bucket, o.Prefix)
	if err != nil {
		return fs, err
	}
	names := slices.Sorted(maps.Keys(folders))
	for i, folder := range names {
		kind, table, date, ok := layout.ParseFolder(o.Prefix, folder)
		if !ok {
			continue
		}
		t := tableOf(kind, table)
		if t == nil {
			return fs, fmt.Errorf("%s: a table this release does not know; erasure cannot check it", folder)
		}
		if o.Progress != nil {
			o.Progress(Progress{Partition: folder, Done: i, Of: len(names), Elapsed: o.Now().Sub(rw.start)})
		}
		var hits []layout.Object
		for _, ob := range folders[folder] {
			fs.FilesScanned++
			found, err := rw.holds(ctx, ob.Key, t, m)
			if err != nil {
				return fs, err
			}
			if !found {
				continue
			}
			if rw.cat.Live(ob.Key) {
				hits = append(hits, ob)
				continue
			}
			// Replaced by a rewrite whose grace has not passed, or never
			// committed: either way not a file queries should count.
			if err := o.Bucket.Delete(ctx, ob.Key); err != nil && gcerrors.Code(err) != gcerrors.NotFound {
				return fs, fmt.Errorf("delete %s: %w", ob.Key, err)
			}
			fs.FilesDeleted++
		}
		if len(hits) == 0 {
			continue
		}
		before := rw.sum.Removed
		jb := &job{kind: layout.Forget, folder: folder, table: t, date: date, inputs: hits,
			drop: func(b *schema.Batch, r int) bool { return m.Row(b, r) }}
		// An erasure waits for the partition rather than skip it.
		for {
			err = rw.do(ctx, jb)
			if !errors.Is(err, layout.ErrLeased) {
				break
			}
			o.Logger.Info("partition leased; waiting to erase in it", "partition", folder)
			select {
			case <-ctx.Done():
				return fs, ctx.Err()
			case <-time.After(5 * time.Second):
			}
		}
		if err != nil {
			return fs, err
		}
		fs.FilesRewritten += len(hits)
		fs.RowsRemoved += rw.sum.Removed - before
		fs.Tables[table] += rw.sum.Removed - before
	}
	fs.Rewrites = rw.sum.Rewrites
	audit.Bucket = fs
	if err := o.Bucket.WriteAll(ctx, AuditKey(o.Prefix, audit.ID), audit.JSON(), &blob.WriterOptions{ContentType: "application/json"}); err != nil {
		return fs, fmt.Errorf("write audit record: %w", err)
	}
	return fs, nil
}

// holds reports whether any row of the file at key holds an address.
func (rw *rewriter) holds(ctx context.Context, key string, t *schema.Table, m *Matcher) (bool, error) {
	dir, err := os.MkdirTemp(rw.o.WorkDir, "sgload-forget-")
	if err != nil {
		return false, err
	}
	defer os.RemoveAll(dir)
	local := filepath.Join(dir, "f.parquet")
	size, err := rw.o.Bucket.Download(ctx, key, local)
	if err != nil {
		return false, err
	}
	f, err := os.Open(local)
	if err != nil {
		return false, err
	}
	defer f.Close()
	r, err := parquetfile.OpenReader(f, size, t)
	if err != nil {
		return false, fmt.Errorf("%s: %w", key, err)
	}
	b := schema.NewBatch(t)
	for {
		b.Reset()
		n, err := r.Read(b, 4096)
		for i := range n {
			if m.Row(b, i) {
				return true, nil
			}
		}
		if errors.Is(err, io.EOF) {
			return false, nil
		}
		if err != nil {
			return false, fmt.Errorf("read %s: %w", key, err)
		}
	}
}
