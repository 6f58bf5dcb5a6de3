package layout

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path"
	"strconv"
	"strings"
	"time"

	"gocloud.dev/blob"
	"gocloud.dev/gcerrors"

	"github.com/sgload/sgload/bucket"
)

// A lease lets one process at a time rewrite a partition, across machines,
// with nothing but the bucket: <prefix>/_sgload/leases/<name>/<generation>.json,
// each generation written only if absent (IfNotExist, which every store
// sgload supports enforces). The highest generation is the holder; it
// expires at the time it names, so a holder that dies holds nothing for
// long. Taking an expired lease, or renewing one's own, writes the next
// generation: of two processes racing for it, exactly one succeeds.

// ErrLeased means another holder has the lease and it has not expired.
var ErrLeased = errors.New("leased by another process")

// Lease is a held lease.
type Lease struct {
	b      *bucket.Bucket
	dir    string
	holder string
	gen    int64
	gens   []int64 // the generations this holder wrote
	until  time.Time
	ttl    time.Duration
}

type leaseBody struct {
	Holder  string    `json:"holder"`
	Expires time.Time `json:"expires"`
}

// LeaseName turns a partition folder into a lease name.
func LeaseName(prefix, folder string) string {
	rel := strings.TrimPrefix(strings.TrimPrefix(folder, prefix), "/")
	return strings.NewReplacer("/", ".", "=", "-").Replace(rel)
}

// AcquireLease takes the lease called name for ttl, or returns ErrLeased.
func AcquireLease(ctx context.Context, b *bucket.Bucket, prefix, name, holder string, ttl time.Duration, now time.Time) (*Lease, error) {
	l := &Lease{b: b, dir: Join(prefix, LeasesDir, name), holder: holder, ttl: ttl}
	gen, body, err := l.highest(ctx)
	if err != nil {
		return nil, err
	}
	if gen > 0 && now.Before(body.Expires) {
		return nil, fmt.Errorf("lease %s: %w (%s, until %s)", name, ErrLeased, body.Holder, body.Expires.Format(time.RFC3339))
	}
	if err := l.write(ctx, gen+1, now); err != nil {
		return nil, err
	}
	// Generations below ours belong to holders that released or died.
	for g := gen; g > 0 && g > gen-4; g-- {
		_ = b.Delete(ctx, l.key(g))
	}
	return l, nil
}

// highest returns the highest generation and what it says (0 for none).
func (l *Lease) highest(ctx context.Context) (int64, leaseBody, error) {
	keys, err := listKeys(ctx, l.b, l.dir, ".json")
	if err != nil {
		return 0, leaseBody{}, err
	}
	var top int64
	for _, k := range keys {
		if g, err := strconv.ParseInt(strings.TrimSuffix(path.Base(k), ".json"), 16, 64); err == nil && g > top {
			top = g
		}
	}
	if top == 0 {
		return 0, leaseBody{}, nil
	}
	data, err := l.b.ReadAll(ctx, l.key(top))
	var body leaseBody
	if err == nil {
		err = json.Unmarshal(data, &body)
	}
	if err != nil {
		// Unreadable or gone: count it as expired, so a torn write cannot
		// hold a partition for ever.
		return top, leaseBody{}, nil
	}
	return top, body, nil
}

func (l *Lease) key(gen int64) string { return Join(l.dir, fmt.Sprintf("%016x.json", gen)) }

// write takes generation gen, or fails with ErrLeased when another process
// wrote it first.
func (l *Lease) write(ctx context.Context, gen int64, now time.Time) error {
	until := now.Add(l.ttl)
	data, _ := json.Marshal(leaseBody{Holder: l.holder, Expires: until})
	err := l.b.WriteAll(ctx, l.key(gen), data, &blob.WriterOptions{ContentType: "application/json", IfNotExist: true})
	if gcerrors.Code(err) == gcerrors.FailedPrecondition {
		return fmt.Errorf("lease %s: %w (taken at the same moment)", path.Base(l.dir), ErrLeased)
	}
	if err != nil {
		return fmt.Errorf("write lease %s: %w", l.key(gen), err)
	}
	l.gen, l.until = gen, until
	l.gens = append(l.gens, gen)
	return nil
}

// Renew extends the lease from now, and fails with ErrLeased when another
// process took it over (after it had expired).
func (l *Lease) Renew(ctx context.Context, now time.Time) error {
	top, _, err := l.highest(ctx)
	if err != nil {
		return err
	}
	if top != l.gen {
		return fmt.Errorf("lease %s: %w (taken over)", path.Base(l.dir), ErrLeased)
	}
	return l.write(ctx, top+1, now)
}

// RenewIfDue renews the lease once a quarter of its time has passed since
// it was last written, and does nothing before: for loops that renew as
// they go, where a renewal each step would list and write the lease
// folder thousands of times. The lease stays ours for at least three
// quarters of its time; a commit still calls Renew, which always checks.
func (l *Lease) RenewIfDue(ctx context.Context, now time.Time) error {
	if now.Before(l.until.Add(-l.ttl * 3 / 4)) {
		return nil
	}
	return l.Renew(ctx, now)
}

// Release gives the lease up, deleting what this holder wrote.
func (l *Lease) Release(ctx context.Context) error {
	var first error
	for _, g := range l.gens {
		if err := l.b.Delete(ctx, l.key(g)); err != nil && gcerrors.Code(err) != gcerrors.NotFound && first == nil {
			first = err
		}
	}
	return first
}
