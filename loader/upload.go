package loader

import (
	"context"
	"fmt"
	"os"
	"time"

	"gocloud.dev/blob"
	"gocloud.dev/gcerrors"

	"github.com/sgload/sgload/bucket"
	"github.com/sgload/sgload/internal/backoff"
)

// uploadRetries and uploadBackoff bound the retries of one object; the SDKs
// retry below this too.
var (
	uploadRetries = 3
	uploadBackoff = time.Second
)

// upload journals the object's key, then uploads the finished local file,
// retrying transient failures, then records it for the manifest.
func (c *converter) upload(ctx context.Context, wf *workFile) error {
	defer os.Remove(wf.path)
	if !c.f.opts.DryRun {
		if err := c.f.journal.addIntent(c.plan.ID, wf.Key); err != nil {
			return err
		}
		var err error
		for attempt := 1; ; attempt++ {
			if err = uploadFile(ctx, c.f.opts.Bucket, wf.Key, wf.path, wf.MD5); err == nil {
				break
			}
			if attempt >= uploadRetries || ctx.Err() != nil || !retryable(err) {
				return fmt.Errorf("upload %s: %w", wf.Key, err)
			}
			c.f.log.Warn("upload failed; retrying", "key", wf.Key, "attempt", attempt, "err", err)
			if err := backoff.Sleep(ctx, uploadBackoff*time.Duration(attempt*attempt)); err != nil {
				return err
			}
		}
	}
	c.mu.Lock()
	c.files = append(c.files, wf.File)
	first := len(c.files) == 1
	c.mu.Unlock()
	if first && !c.f.opts.DryRun {
		return c.f.opts.Crash(StepUploadedOne)
	}
	return nil
}

// uploadFile streams a local file into the bucket; ContentMD5 makes the
// store check the bytes.
func uploadFile(ctx context.Context, b *bucket.Bucket, key, path string, md5 []byte) error {
	return b.UploadFile(ctx, key, path, &blob.WriterOptions{
		ContentType: "application/vnd.apache.parquet",
		ContentMD5:  md5,
	})
}

// retryable is false for errors no retry can cure.
func retryable(err error) bool {
	switch gcerrors.Code(err) {
	case gcerrors.PermissionDenied, gcerrors.InvalidArgument, gcerrors.NotFound, gcerrors.Unimplemented:
		return false
	}
	return true
}
