package main

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestSyncExitCodes(t *testing.T) {
	const key = "SG.cli-secret-key-0123456789"
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer "+key {
			w.WriteHeader(401)
			return
		}
		switch r.URL.Path {
		case "/v3/scopes":
			w.Write([]byte(`{"scopes":["marketing_campaigns.read","templates.read","mail.send"]}`))
		case "/v3/contactdb/lists":
			w.Write([]byte(`{"lists":[{"id":1,"name":"a","recipient_count":2}]}`))
		case "/v3/templates":
			w.WriteHeader(403)
			w.Write([]byte(`{"errors":[{"message":"access forbidden"}]}`))
		default:
			w.WriteHeader(404)
		}
	}))
	defer srv.Close()
	spool := t.TempDir()
	env := []string{"SENDGRID_API_KEY=" + key}
	out, stderr, code := runSgload(t, env, "sync", "--spool", spool, "--api-url", srv.URL, "--collections", "lists,templates", "--json")
	if code != exitPartial {
		t.Fatalf("exit %d, want %d (partial)\n%s%s", code, exitPartial, out, stderr)
	}
	var sum struct {
		Failed []string `json:"failed"`
	}
	if err := json.Unmarshal([]byte(out), &sum); err != nil || strings.Join(sum.Failed, ",") != "templates" {
		t.Fatalf("summary %q: %v", out, err)
	}
	if !strings.Contains(stderr, "templates.read") || strings.Contains(out+stderr, key) {
		t.Fatalf("stderr lacks the scope hint or shows the key:\n%s", stderr)
	}
	_, stderr, code = runSgload(t, []string{"SENDGRID_API_KEY=wrong"}, "sync", "--spool", spool, "--api-url", srv.URL, "--collections", "lists")
	if code != exitUsage || !strings.Contains(stderr, "hint:") {
		t.Fatalf("wrong key: exit %d\n%s", code, stderr)
	}
	_, stderr, code = runSgload(t, []string{"SENDGRID_API_KEY="}, "sync", "--spool", spool)
	if code != exitUsage || !strings.Contains(stderr, "SENDGRID_API_KEY") {
		t.Fatalf("no key: exit %d\n%s", code, stderr)
	}
	_, _, code = runSgload(t, env, "sync", "--spool", spool, "--api-url", srv.URL, "--collections", "nope")
	if code != exitUsage {
		t.Fatalf("unknown collection: exit %d", code)
	}
}
