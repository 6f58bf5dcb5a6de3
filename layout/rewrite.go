package layout

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path"
	"sort"
	"strconv"
	"strings"
	"time"

	"gocloud.dev/blob"
	"gocloud.dev/gcerrors"

	"github.com/sgload/sgload/bucket"
)

// A rewrite replaces files of one partition: with fewer, larger, sorted ones
// (compact), with none (retain), or with copies lacking some rows (forget).
// Its manifest, <prefix>/_sgload/rewrites/<id>.json, is written after its
// outputs and is its commit point. Its inputs stay until DeleteAfter (the
// grace, so queries running at the commit finish), are then deleted, and
// the manifest moves to rewrites/done/<id>.json, which is listed but never
// read again: the set of manifests read on each run stays small however
// long the bucket lives.
//
// Outputs are named rw-<id>-<nnnn>.parquet. Flush's files start with
// "part-", so a file's name says which manifest commits it.
const (
	RewritesDir     = MetaDir + "/rewrites"
	RewritesDoneDir = RewritesDir + "/done"
	LeasesDir       = MetaDir + "/leases"
)

// Rewrite kinds.
const (
	Compact = "compact"
	Retain  = "retain"
	Forget  = "forget"
)

// RewriteVersion is written in every rewrite manifest.
const RewriteVersion = 1

// Rewrite is a rewrite's manifest.
type Rewrite struct {
	Version   int       `json:"version"`
	Kind      string    `json:"kind"`
	ID        string    `json:"id"`
	CreatedAt time.Time `json:"created_at"`
	Sgload    string    `json:"sgload_version"`
	// Partition is the folder rewritten (events/event_type=open/dt=…).
	Partition string  `json:"partition"`
	Table     string  `json:"table"`
	Date      string  `json:"dt"`
	Inputs    []Input `json:"inputs"`
	Outputs   []File  `json:"outputs"`
	RowsIn    int64   `json:"rows_in"`
	RowsOut   int64   `json:"rows_out"`
	// Duplicates are rows dropped by the dedupe rule (compact); Removed
	// are rows dropped on purpose (forget: the rows of the addresses).
	Duplicates  int64     `json:"duplicates"`
	Removed     int64     `json:"removed"`
	DeleteAfter time.Time `json:"delete_after"`
}

// Input is a file a rewrite replaces.
type Input struct {
	Key   string `json:"key"`
	Rows  int64  `json:"rows"`
	Bytes int64  `json:"bytes"`
}

// NewRewriteID makes a rewrite id that sorts by time.
func NewRewriteID(now time.Time) string {
	var rnd [4]byte
	_, _ = rand.Read(rnd[:]) // crypto/rand does not fail on Linux
	return fmt.Sprintf("%016x%s", now.UnixMicro(), hex.EncodeToString(rnd[:]))
}

// RewriteKey is where a rewrite's manifest is written (its commit point).
func RewriteKey(prefix, id string) string { return Join(prefix, RewritesDir, id+".json") }

// RewriteDoneKey is where it moves once its inputs are deleted.
func RewriteDoneKey(prefix, id string) string { return Join(prefix, RewritesDoneDir, id+".json") }

// RewriteObjectKey names output n of rewrite id in folder.
func RewriteObjectKey(folder, id string, n int) string {
	return Join(folder, fmt.Sprintf("rw-%s-%04d.parquet", id, n))
}

// FileOwner says which manifest commits the data file at key: a flush plan
// ("<node>/<plan>") or a rewrite ("rw/<id>"); ok is false for a name sgload
// does not write.
func FileOwner(key string) (owner string, ok bool) {
	name := strings.TrimSuffix(path.Base(key), ".parquet")
	if name == path.Base(key) || len(name) < 6 {
		return "", false
	}
	n := name[len(name)-5:] // "-0001"
	if n[0] != '-' {
		return "", false
	}
	if _, err := strconv.Atoi(n[1:]); err != nil {
		return "", false
	}
	rest := name[:len(name)-5]
	if id, ok := strings.CutPrefix(rest, "rw-"); ok {
		return "rw/" + id, id != ""
	}
	rest, ok = strings.CutPrefix(rest, "part-")
	if !ok || len(rest) < 18 || rest[len(rest)-17] != '-' {
		return "", false
	}
	return rest[:len(rest)-17] + "/" + rest[len(rest)-16:], true
}

// WriteRewrite writes r's manifest at key.
func WriteRewrite(ctx context.Context, b *bucket.Bucket, key string, r *Rewrite) error {
	data, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	if err := b.WriteAll(ctx, key, append(data, '\n'), &blob.WriterOptions{ContentType: "application/json"}); err != nil {
		return fmt.Errorf("write rewrite manifest %s: %w", key, err)
	}
	return nil
}

// ReadRewrite reads the rewrite manifest at key.
func ReadRewrite(ctx context.Context, b *bucket.Bucket, key string) (*Rewrite, error) {
	data, err := b.ReadAll(ctx, key)
	if err != nil {
		return nil, err
	}
	var r Rewrite
	if err := json.Unmarshal(data, &r); err != nil {
		return nil, fmt.Errorf("rewrite manifest %s: %w", key, err)
	}
	return &r, nil
}

// listKeys lists the keys directly in dir ending in suffix, sorted.
func listKeys(ctx context.Context, b *bucket.Bucket, dir, suffix string) ([]string, error) {
	var keys []string
	it := b.List(&blob.ListOptions{Prefix: dir + "/", Delimiter: "/"})
	for {
		obj, err := it.Next(ctx)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("list %s: %w", dir, err)
		}
		if !obj.IsDir && strings.HasSuffix(obj.Key, suffix) {
			keys = append(keys, obj.Key)
		}
	}
	sort.Strings(keys)
	return keys, nil
}

// Catalog is what the bucket holds committed: which flush plans and
// rewrites have a manifest, and which files the rewrites not yet finished
// replaced. Built from listings and the (few) unfinished rewrite
// manifests, never from reading every flush manifest.
type Catalog struct {
	prefix   string
	plans    map[string]bool // "<node>/<plan>"
	rewrites map[string]bool // committed rewrite ids, finished or not
	// Active are the committed rewrites whose inputs are not yet deleted.
	Active   []*Rewrite
	replaced map[string]*Rewrite // input key -> the active rewrite replacing it
}

// LoadCatalog reads the catalog of the destination at prefix.
func LoadCatalog(ctx context.Context, b *bucket.Bucket, prefix string) (*Catalog, error) {
	c := &Catalog{prefix: prefix, plans: map[string]bool{}, rewrites: map[string]bool{}, replaced: map[string]*Rewrite{}}
	keys, err := ListManifests(ctx, b, prefix)
	if err != nil {
		return nil, err
	}
	base := Join(prefix, ManifestsDir) + "/"
	for _, k := range keys {
		c.plans[strings.TrimSuffix(strings.TrimPrefix(k, base), ".json")] = true
	}
	done, err := listKeys(ctx, b, Join(prefix, RewritesDoneDir), ".json")
	if err != nil {
		return nil, err
	}
	for _, k := range done {
		c.rewrites[strings.TrimSuffix(path.Base(k), ".json")] = true
	}
	active, err := listKeys(ctx, b, Join(prefix, RewritesDir), ".json")
	if err != nil {
		return nil, err
	}
	for _, k := range active {
		r, err := ReadRewrite(ctx, b, k)
		if gcerrors.Code(err) == gcerrors.NotFound {
			continue // finished by another process since the listing
		}
		if err != nil {
			return nil, err
		}
		c.add(r)
	}
	return c, nil
}

// Refresh reads the rewrites committed since the catalog was loaded.
func (c *Catalog) Refresh(ctx context.Context, b *bucket.Bucket) error {
	active, err := listKeys(ctx, b, Join(c.prefix, RewritesDir), ".json")
	if err != nil {
		return err
	}
	for _, k := range active {
		if c.rewrites[strings.TrimSuffix(path.Base(k), ".json")] {
			continue
		}
		r, err := ReadRewrite(ctx, b, k)
		if gcerrors.Code(err) == gcerrors.NotFound {
			continue
		}
		if err != nil {
			return err
		}
		c.add(r)
	}
	return nil
}

// Add records a rewrite this process committed.
func (c *Catalog) Add(r *Rewrite) { c.add(r) }

// Finished records that r's inputs are deleted and its manifest done.
func (c *Catalog) Finished(r *Rewrite) {
	for i, a := range c.Active {
		if a.ID == r.ID {
			c.Active = append(c.Active[:i], c.Active[i+1:]...)
			break
		}
	}
	for _, in := range r.Inputs {
		if c.replaced[in.Key] == r {
			delete(c.replaced, in.Key)
		}
	}
}

func (c *Catalog) add(r *Rewrite) {
	c.rewrites[r.ID] = true
	c.Active = append(c.Active, r)
	for _, in := range r.Inputs {
		c.replaced[in.Key] = r
	}
}

// Committed reports whether the data file at key is committed (its flush
// plan or rewrite has a manifest), whether or not a rewrite replaced it.
func (c *Catalog) Committed(key string) bool {
	owner, ok := FileOwner(key)
	if !ok {
		return false
	}
	if id, ok := strings.CutPrefix(owner, "rw/"); ok {
		return c.rewrites[id]
	}
	return c.plans[owner]
}

// Replaced returns the unfinished rewrite that replaced the file at key.
func (c *Catalog) Replaced(key string) (*Rewrite, bool) {
	r, ok := c.replaced[key]
	return r, ok
}

// Live reports whether the file at key holds rows queries should count:
// committed and not replaced.
func (c *Catalog) Live(key string) bool {
	_, gone := c.replaced[key]
	return !gone && c.Committed(key)
}

// Object is a data file as a listing shows it.
type Object struct {
	Key     string
	Size    int64
	ModTime time.Time
}

// PartitionFiles lists the data files in each partition folder under the
// prefix (events and objects), by folder.
func PartitionFiles(ctx context.Context, b *bucket.Bucket, prefix string) (map[string][]Object, error) {
	out := map[string][]Object{}
	for _, dir := range []string{EventsDir, ObjectsDir} {
		it := b.List(&blob.ListOptions{Prefix: Join(prefix, dir) + "/"})
		for {
			obj, err := it.Next(ctx)
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				return nil, fmt.Errorf("list %s: %w", Join(prefix, dir), err)
			}
			if obj.IsDir || !strings.HasSuffix(obj.Key, ".parquet") {
				continue
			}
			folder := path.Dir(obj.Key)
			out[folder] = append(out[folder], Object{Key: obj.Key, Size: obj.Size, ModTime: obj.ModTime})
		}
	}
	return out, nil
}

// ParseFolder splits a partition folder (relative to nothing: the key's
// folder) into its kind, table and date.
func ParseFolder(prefix, folder string) (kind Kind, table, date string, ok bool) {
	rel := strings.TrimPrefix(strings.TrimPrefix(folder, prefix), "/")
	parts := strings.Split(rel, "/")
	if len(parts) != 3 || !strings.HasPrefix(parts[2], "dt=") {
		return 0, "", "", false
	}
	date = strings.TrimPrefix(parts[2], "dt=")
	switch parts[0] {
	case EventsDir:
		table, ok = strings.CutPrefix(parts[1], PartitionKey+"=")
		return Events, table, date, ok
	case ObjectsDir:
		return Objects, parts[1], date, true
	}
	return 0, "", "", false
}

// LatestRewrite is the most recent committed rewrite of kind (finished or
// within its grace) and its manifest's key, or nil when there is none.
// Rewrite ids sort by time, so the listing is read newest first and stops
// at the first of the kind (at most 64 manifests are read: a bucket whose
// last 64 rewrites were all of other kinds reports none).
func LatestRewrite(ctx context.Context, b *bucket.Bucket, prefix, kind string) (*Rewrite, string, error) {
	var keys []string
	for _, dir := range []string{RewritesDir, RewritesDoneDir} {
		k, err := listKeys(ctx, b, Join(prefix, dir), ".json")
		if err != nil {
			return nil, "", err
		}
		keys = append(keys, k...)
	}
	sort.Slice(keys, func(i, j int) bool { return path.Base(keys[i]) > path.Base(keys[j]) })
	for i, k := range keys {
		if i == 64 {
			break
		}
		r, err := ReadRewrite(ctx, b, k)
		if gcerrors.Code(err) == gcerrors.NotFound {
			// Moved to done/ since the listing; the copy there was listed only if it was already there.
			if r, err = ReadRewrite(ctx, b, RewriteDoneKey(prefix, strings.TrimSuffix(path.Base(k), ".json"))); err != nil {
				continue
			}
			k = RewriteDoneKey(prefix, r.ID)
		}
		if err != nil {
			return nil, "", err
		}
		if r.Kind == kind {
			return r, k, nil
		}
	}
	return nil, "", nil
}
