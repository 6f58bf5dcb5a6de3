package bucket

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"gocloud.dev/blob"
	_ "gocloud.dev/blob/s3blob"
)

// frozenStore is an S3 endpoint that takes requests and never answers, as a
// store does when it freezes: only the deadline can end a request to it.
func frozenStore(t *testing.T) string {
	t.Helper()
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}))
	t.Cleanup(func() { close(release); srv.Close() })
	t.Setenv("AWS_ACCESS_KEY_ID", "test")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "test-secret")
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	return srv.URL
}

func TestRequestsToAFrozenStoreEnd(t *testing.T) {
	endpoint := frozenStore(t)
	ctx := context.Background()
	b, err := Open(ctx, "s3://frozen?endpoint="+endpoint+"&region=us-east-1&use_path_style=true")
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	b.Timeout = 300 * time.Millisecond
	calls := map[string]func() error{
		"upload": func() error {
			return b.Upload(ctx, "k", strings.NewReader("data"), &blob.WriterOptions{ContentType: "application/octet-stream"})
		},
		"write":  func() error { return b.WriteAll(ctx, "k", []byte("x"), nil) },
		"read":   func() error { _, err := b.ReadAll(ctx, "k"); return err },
		"delete": func() error { return b.Delete(ctx, "k") },
		"attrs":  func() error { _, err := b.Attributes(ctx, "k"); return err },
		"list":   func() error { _, err := b.List(nil).Next(ctx); return err },
	}
	for name, call := range calls {
		t.Run(name, func(t *testing.T) {
			err := call()
			if !errors.Is(err, ErrStalled) {
				t.Fatalf("%s against a frozen store: %v, want ErrStalled", name, err)
			}
		})
	}
}

func TestOpenErrorsHideCredentials(t *testing.T) {
	_, err := Open(context.Background(), "s3://b?endpoint=http://USERMARK:PASSMARK@127.0.0.1:1&nonsense=NONSENSEMARK")
	if err == nil {
		t.Fatal("unknown parameter accepted")
	}
	for _, m := range []string{"USERMARK", "PASSMARK", "NONSENSEMARK"} {
		if strings.Contains(err.Error(), m) {
			t.Errorf("error quotes %s: %v", m, err)
		}
	}
	b, err := Open(context.Background(), "s3://b?endpoint=http://USERMARK:PASSMARK@127.0.0.1:1&region=x")
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if u := b.Redacted(); strings.Contains(u, "MARK") {
		t.Errorf("Redacted() = %q", u)
	}
}
