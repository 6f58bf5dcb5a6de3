package layout

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"time"

	"gocloud.dev/blob"
	"gocloud.dev/gcerrors"

	"github.com/sgload/sgload/bucket"
)

// A destination (bucket + prefix) names itself with a random id kept in
// the bucket, <prefix>/_sgload/destination.json, written once (only if
// absent) by the first flush. The spool keeps one dedupe history per
// destination id, so the history describes what that destination holds:
// the same prefix reached by another URL shares it, and a new prefix, or a
// prefix whose objects were deleted, starts empty.
type destination struct {
	ID        string    `json:"id"`
	CreatedAt time.Time `json:"created_at"`
}

// DestinationKey is where the destination's id lives.
func DestinationKey(prefix string) string { return Join(prefix, MetaDir, "destination.json") }

// DestinationID reads the destination's id, creating it unless create is
// false; "" when there is none and create is false.
func DestinationID(ctx context.Context, b *bucket.Bucket, prefix string, create bool, now time.Time) (string, error) {
	key := DestinationKey(prefix)
	for range 2 {
		data, err := b.ReadAll(ctx, key)
		if err == nil {
			var d destination
			if err := json.Unmarshal(data, &d); err != nil || d.ID == "" {
				return "", fmt.Errorf("destination id %s: not sgload's (%v)", key, err)
			}
			return d.ID, nil
		}
		if gcerrors.Code(err) != gcerrors.NotFound {
			return "", fmt.Errorf("read destination id %s: %w", key, err)
		}
		if !create {
			return "", nil
		}
		var rnd [8]byte
		_, _ = rand.Read(rnd[:])
		body, _ := json.Marshal(destination{ID: hex.EncodeToString(rnd[:]), CreatedAt: now.UTC()})
		err = b.WriteAll(ctx, key, append(body, '\n'), &blob.WriterOptions{ContentType: "application/json", IfNotExist: true})
		if err != nil && gcerrors.Code(err) != gcerrors.FailedPrecondition {
			return "", fmt.Errorf("write destination id %s: %w", key, err)
		}
		// Written, or another flush wrote it first: read what is there.
	}
	return "", fmt.Errorf("destination id %s: written but not readable", key)
}
