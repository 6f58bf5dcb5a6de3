package main

import (
	"context"
	"fmt"
	"strings"

	"github.com/urfave/cli/v2"
	"gocloud.dev/blob"
	_ "gocloud.dev/blob/azureblob" // azblob://
	_ "gocloud.dev/blob/fileblob"  // file://
	_ "gocloud.dev/blob/gcsblob"   // gs://
	_ "gocloud.dev/blob/memblob"   // mem://
	_ "gocloud.dev/blob/s3blob"    // s3://

	"github.com/sgload/sgload/internal/filebucket"
	"github.com/sgload/sgload/loader"
)

func bucketFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "bucket", EnvVars: []string{"SGLOAD_BUCKET"},
			Usage: "destination: s3://, gs://, azblob://, file:// URL or a local folder (see README, Buckets)"},
		&cli.StringFlag{Name: "prefix", EnvVars: []string{"SGLOAD_PREFIX"},
			Usage: "key prefix inside the bucket, e.g. sendgrid"},
	}
}

// openedBucket is a bucket and what sgload needs to know about its kind.
type openedBucket struct {
	*blob.Bucket
	url  string
	file *filebucket.Durable // set for file:// buckets
}

func openBucket(ctx context.Context, c *cli.Context) (*openedBucket, error) {
	raw := c.String("bucket")
	if raw == "" {
		return nil, usageError(fmt.Errorf("--bucket is required"), "e.g. --bucket s3://my-bucket?region=us-east-1 or --bucket ./warehouse")
	}
	u, root, err := filebucket.Normalize(raw)
	if err != nil {
		return nil, usageError(err, "")
	}
	b, err := blob.OpenBucket(ctx, u)
	if err != nil {
		return nil, usageError(fmt.Errorf("open bucket %s: %w", raw, err), "check the URL's scheme and query parameters (README, Buckets)")
	}
	ob := &openedBucket{Bucket: b, url: raw}
	if root != "" {
		ob.file = &filebucket.Durable{Root: root}
	}
	return ob, nil
}

// loaderOptions are the flush options flush and run both take from their
// flags; flush adds its tuning flags.
func (b *openedBucket) loaderOptions(c *cli.Context) loader.Options {
	o := loader.Options{Spool: c.String("spool"), Bucket: b.Bucket, BucketURL: b.url,
		Prefix: strings.Trim(c.String("prefix"), "/"), Node: c.String("node"), Version: version}
	if b.file != nil {
		o.AfterWrite = b.file.AfterWrite
		o.Sweep = b.file.Sweep
	}
	return o
}
