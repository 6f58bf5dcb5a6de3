package main

import (
	"regexp"
	"strings"
	"testing"
)

func TestTokenNew(t *testing.T) {
	out, _, code := runSgload(t, nil, "token", "new", "--base-url", "https://hooks.example.com/")
	if code != 0 {
		t.Fatalf("exit %d", code)
	}
	m := regexp.MustCompile(`(?m)^token: ([A-Za-z0-9_-]{43})\nurl:   https://hooks\.example\.com/webhook/sendgrid/([A-Za-z0-9_-]{43})$`).FindStringSubmatch(strings.TrimSpace(out))
	if m == nil || m[1] != m[2] {
		t.Fatalf("unexpected output:\n%s", out)
	}
	again, _, _ := runSgload(t, nil, "token", "new")
	if strings.Contains(again, m[1]) {
		t.Fatal("two calls printed the same token")
	}
}
