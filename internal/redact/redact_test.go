package redact

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestURL(t *testing.T) {
	tests := []struct{ name, in, want string }{
		{"plain", "https://example.com/hook", "https://example.com/hook"},
		{"user info", "https://user:pass@example.com/hook", "https://REDACTED@example.com/hook"},
		{"user only", "https://token@example.com/", "https://REDACTED@example.com/"},
		{"query token", "https://example.com/hook?token=s3cret&a=b", "https://example.com/hook?a=REDACTED&token=REDACTED"},
		{"bucket options kept", "s3://b?region=us-east-1&use_path_style=true", "s3://b?region=us-east-1&use_path_style=true"},
		{"endpoint redacted inside", "s3://b?endpoint=http://k:s@h:9000&region=x", "s3://b?endpoint=http%3A%2F%2FREDACTED%40h%3A9000&region=x"},
		{"gcs key path", "gs://b?access_id=me&private_key_path=/k", "gs://b?access_id=REDACTED&private_key_path=REDACTED"},
		{"presigned", "https://bucket.s3.amazonaws.com/x.csv.gz?X-Amz-Signature=abc&X-Amz-Credential=AK", "https://bucket.s3.amazonaws.com/x.csv.gz?X-Amz-Credential=REDACTED&X-Amz-Signature=REDACTED"},
		{"fragment dropped", "https://example.com/#tok", "https://example.com/"},
		{"token in the path", "https://h/webhook/sendgrid/Zq3xY_7kP0dLm2Nv9Rt4Ws8Bc6", "https://h/webhook/sendgrid/REDACTED"},
		{"ordinary long segment kept", "https://h/objects/event_type=group_unsubscribe/dt=2026-01-01", "https://h/objects/event_type=group_unsubscribe/dt=2026-01-01"},
		{"folder", "/var/lib/bucket", "/var/lib/bucket"},
		{"folder with a long name", "/tmp/TestFlushKilledAtEveryStep451914978/bucket", "/tmp/TestFlushKilledAtEveryStep451914978/bucket"},
		{"file URL", "file:///tmp/TestFlushKilledAtEveryStep451914978/b", "file:///tmp/TestFlushKilledAtEveryStep451914978/b"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := URL(tc.in); got != tc.want {
				t.Errorf("URL(%q) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
}

// TestErrorFromHTTPClient checks the error net/http really returns: it
// hides the password but quotes the query.
func TestErrorFromHTTPClient(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	addr := srv.Listener.Addr().String()
	srv.Close() // nothing listens: the request fails
	req, _ := http.NewRequestWithContext(context.Background(), "POST", "http://user:PASSMARK@"+addr+"/hook?token=TOKMARK", nil)
	_, err := http.DefaultClient.Do(req)
	if err == nil {
		t.Fatal("request to a closed port succeeded")
	}
	if !strings.Contains(err.Error(), "TOKMARK") {
		t.Fatalf("net/http no longer quotes the query (%v): this test needs a new example", err)
	}
	for _, e := range []error{Error(err), Error(fmt.Errorf("tee: %w", err))} {
		if s := e.Error(); strings.Contains(s, "TOKMARK") || strings.Contains(s, "PASSMARK") || !strings.Contains(s, addr) {
			t.Errorf("redacted error %q", s)
		}
	}
	var ue interface{ Timeout() bool }
	if !errors.As(Error(err), &ue) {
		t.Error("redacted error lost its chain")
	}
}

func TestText(t *testing.T) {
	if got := Text("key SG.abc123 refused", "SG.abc123", ""); got != "key REDACTED refused" {
		t.Errorf("Text = %q", got)
	}
}
