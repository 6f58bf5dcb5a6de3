package main

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/urfave/cli/v2"
	_ "gocloud.dev/blob/azureblob" // azblob://
	_ "gocloud.dev/blob/fileblob"  // file://
	_ "gocloud.dev/blob/gcsblob"   // gs://
	_ "gocloud.dev/blob/memblob"   // mem://
	_ "gocloud.dev/blob/s3blob"    // s3://

	"github.com/sgload/sgload/bucket"
	"github.com/sgload/sgload/spool"
)

func bucketFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "bucket", EnvVars: []string{"SGLOAD_BUCKET"},
			Usage: "destination: s3://, gs://, azblob://, file:// URL or a local folder (see README, Buckets)"},
		&cli.StringFlag{Name: "prefix", EnvVars: []string{"SGLOAD_PREFIX"},
			Usage: "key prefix inside the bucket, e.g. sendgrid"},
		&cli.DurationFlag{Name: "bucket-timeout", Value: bucket.DefaultTimeout, EnvVars: []string{"SGLOAD_BUCKET_TIMEOUT"},
			Usage: "fail a request to the bucket that makes no progress for this long (a store that stopped answering)"},
	}
}

func openBucket(ctx context.Context, c *cli.Context) (*bucket.Bucket, error) {
	return openBucketWith(ctx, c, bucket.Open)
}

// openExistingBucket is for the commands that only read (views, verify,
// status): a local folder must exist.
func openExistingBucket(ctx context.Context, c *cli.Context) (*bucket.Bucket, error) {
	return openBucketWith(ctx, c, bucket.OpenExisting)
}

func openBucketWith(ctx context.Context, c *cli.Context, open func(context.Context, string) (*bucket.Bucket, error)) (*bucket.Bucket, error) {
	raw := c.String("bucket")
	if raw == "" {
		return nil, usageError(fmt.Errorf("--bucket is required"), "e.g. --bucket s3://my-bucket?region=us-east-1 or --bucket ./warehouse")
	}
	b, err := open(ctx, raw)
	var he *bucket.HintError
	switch {
	case errors.As(err, &he):
		return nil, usageError(err, he.Hint)
	case err != nil:
		return nil, usageError(err, "check the URL's scheme and query parameters (README, Buckets)")
	}
	if d := c.Duration("bucket-timeout"); d > 0 {
		b.Timeout = d
	}
	return b, nil
}

// prefix is --prefix without surrounding slashes.
func prefix(c *cli.Context) string { return trimSlashes(c.String("prefix")) }

func trimSlashes(s string) string { return strings.Trim(s, "/") }

// openSpool opens --spool, which must exist (only serve creates a spool):
// a mistyped path is an error, never a new empty spool.
func openSpool(c *cli.Context) (spool.Dir, error) { return spool.Open(c.String("spool")) }
