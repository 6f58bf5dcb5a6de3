// Package testbucket opens a fresh, empty bucket of each kind sgload
// supports for tests: mem://, file://, and real S3 (VersityGW), GCS
// (fake-gcs-server) and Azure Blob (Azurite) servers on loopback, started by
// scripts/emulators.sh (make test does it). Each call makes a bucket of its
// own, so tests never see each other's objects.
package testbucket

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"cloud.google.com/go/storage"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/bloberror"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/container"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"gocloud.dev/blob"
	_ "gocloud.dev/blob/azureblob"
	_ "gocloud.dev/blob/fileblob"
	_ "gocloud.dev/blob/gcsblob"
	_ "gocloud.dev/blob/memblob"
	_ "gocloud.dev/blob/s3blob"

	"github.com/sgload/sgload/bucket"
)

// Kinds are the bucket kinds, in the order tests run them.
var Kinds = []string{"mem", "file", "s3", "gcs", "azure"}

// Bucket is an open test bucket. Its URL opens the same bucket (from
// another process too, with the emulator environment).
type Bucket struct {
	*bucket.Bucket
	Kind string
	// Dir is the folder of a file:// bucket.
	Dir string
}

// Available reports whether kind can be opened here; without the emulator
// environment the cloud kinds are skipped, unless SGLOAD_REQUIRE_EMULATORS
// is set (make test sets it), which makes their absence a failure.
func Available(t testing.TB, kind string) bool {
	t.Helper()
	env := map[string]string{"s3": "SGLOAD_TEST_S3_ENDPOINT", "gcs": "STORAGE_EMULATOR_HOST", "azure": "SGLOAD_TEST_AZURE_ENDPOINT"}[kind]
	if env == "" || os.Getenv(env) != "" {
		return true
	}
	if os.Getenv("SGLOAD_REQUIRE_EMULATORS") != "" {
		t.Fatalf("%s is not set: run the tests with make test, which starts the storage emulators", env)
	}
	return false
}

// Open makes and opens a new empty bucket of kind. The test is skipped when
// the kind's server is not available (see Available).
func Open(t testing.TB, kind string) *Bucket {
	t.Helper()
	if !Available(t, kind) {
		t.Skipf("no %s emulator (run make test)", kind)
	}
	ctx := context.Background()
	name := "sgload-" + randomName()
	var u string
	b := &Bucket{Kind: kind}
	switch kind {
	case "mem":
		u = "mem://"
	case "file":
		u = filepath.Join(t.TempDir(), "bucket")
	case "s3":
		q := url.Values{"endpoint": {os.Getenv("SGLOAD_TEST_S3_ENDPOINT")}, "region": {"us-east-1"},
			"use_path_style": {"true"}, "response_checksum_validation": {"when_required"}}
		u = "s3://" + name + "?" + q.Encode()
	case "gcs":
		u = "gs://" + name
	case "azure":
		u = "azblob://" + name + "?protocol=http&localemu=true&domain=" + os.Getenv("SGLOAD_TEST_AZURE_ENDPOINT")
	default:
		t.Fatalf("unknown bucket kind %q", kind)
	}
	bk, err := bucket.Open(ctx, u)
	if err != nil {
		t.Fatalf("open %s: %v", u, err)
	}
	b.Bucket, b.Dir = bk, bk.Root()
	if err := create(ctx, kind, name, bk.Bucket); err != nil {
		t.Fatalf("create %s bucket %s: %v", kind, name, err)
	}
	t.Cleanup(func() { bk.Close() })
	return b
}

func create(ctx context.Context, kind, name string, b *blob.Bucket) error {
	switch kind {
	case "s3":
		var c *s3.Client
		if !b.As(&c) {
			return errors.New("no s3 client")
		}
		_, err := c.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(name)})
		return err
	case "gcs":
		var c *storage.Client
		if !b.As(&c) {
			return errors.New("no gcs client")
		}
		return c.Bucket(name).Create(ctx, "sgload-test", nil)
	case "azure":
		var c *container.Client
		if !b.As(&c) {
			return errors.New("no azure client")
		}
		if _, err := c.Create(ctx, nil); err != nil && !bloberror.HasCode(err, bloberror.ContainerAlreadyExists) {
			return err
		}
	}
	return nil
}

func randomName() string {
	var b [6]byte
	_, _ = rand.Read(b[:]) // crypto/rand does not fail on Linux
	return hex.EncodeToString(b[:])
}

// Keys lists every key in the bucket under prefix, sorted.
func (b *Bucket) Keys(t testing.TB, prefix string) []string {
	t.Helper()
	var keys []string
	it := b.List(&blob.ListOptions{Prefix: prefix})
	for {
		obj, err := it.Next(context.Background())
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, obj.Key)
	}
	return keys
}

// Mirror copies every object under prefix into a local folder (DuckDB reads
// local files: its httpfs extension cannot be installed offline) and
// returns the folder.
func (b *Bucket) Mirror(t testing.TB, prefix string) string {
	t.Helper()
	if b.Dir != "" {
		return b.Dir
	}
	dir := t.TempDir()
	for _, k := range b.Keys(t, prefix) {
		data, err := b.ReadAll(context.Background(), k)
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, filepath.FromSlash(k))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// String is the kind, for subtest names.
func (b *Bucket) String() string { return strings.ToUpper(b.Kind) }
