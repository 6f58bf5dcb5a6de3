package main

import (
	"strings"
	"testing"
)

func TestExitCodesAndHints(t *testing.T) {
	spool := t.TempDir()
	tests := []struct {
		name   string
		env    []string
		args   []string
		code   int
		stderr string
	}{
		{"serve without auth", nil, []string{"serve", "--spool", spool, "--addr", "127.0.0.1:0"}, exitUsage,
			"hint: for SendGrid, set --signing-key"},
		{"unknown flag", nil, []string{"serve", "--no-such-flag"}, exitUsage, "hint: see sgload serve --help"},
		{"bad signing key", nil, []string{"serve", "--spool", spool, "--signing-key", "bm90IGEga2V5"}, exitUsage,
			"hint: paste the Verification Key"},
		{"half an OAuth client", []string{"SGLOAD_OAUTH_CLIENT_ID=sendgrid"}, []string{"serve", "--spool", spool}, exitUsage,
			"SGLOAD_OAUTH_CLIENT_SECRET"},
		{"bad size", nil, []string{"serve", "--max-body-bytes", "lots"}, exitUsage, "error:"},
		{"flush of a missing spool", nil, []string{"flush", "--spool", spool + "/typo", "--bucket", t.TempDir()}, exitUsage, "hint: check --spool"},
		{"verify of a missing spool", nil, []string{"verify", "--spool", spool + "/typo", "--bucket", t.TempDir()}, exitUsage, "--no-spool"},
		{"bad log level", nil, []string{"--log-level", "loud", "serve", "--insecure-no-auth"}, exitUsage, "hint: use debug"},
		{"forward with a missing user id map", []string{"SGLOAD_SEGMENT_WRITE_KEY=wk"}, []string{"forward", "--spool", spool, "--user-id-map", spool + "/none.csv"},
			exitUsage, "hint: the file holds email,user_id rows"},
		{"forward with no synced contacts", []string{"SGLOAD_SEGMENT_WRITE_KEY=wk", "SGLOAD_USER_ID_FROM_CONTACTS=true"}, []string{"forward", "--spool", spool},
			exitUsage, "hint: run sgload sync --collections mc_contacts"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, stderr, code := runSgload(t, tc.env, tc.args...)
			if code != tc.code || !strings.Contains(stderr, tc.stderr) {
				t.Fatalf("exit %d, stderr:\n%s\nwant exit %d and %q", code, stderr, tc.code, tc.stderr)
			}
		})
	}
}

// TestSecretsNeverPrinted starts serve with every secret set and checks that
// none appears in its logs or its --help.
func TestSecretsNeverPrinted(t *testing.T) {
	secret := "oauth-secret-value-0123456789"
	urlTok := "url-token-value-0123456789abcdef"
	env := []string{"SGLOAD_OAUTH_CLIENT_ID=sendgrid", "SGLOAD_OAUTH_CLIENT_SECRET=" + secret, "SGLOAD_URL_TOKENS=" + urlTok}
	help, _, _ := runSgload(t, env, "serve", "--help")
	p := startSgload(t, env, "--log-level", "debug", "serve", "--spool", t.TempDir(), "--addr", "127.0.0.1:0")
	p.waitLog(t, "serving")
	p.cmd.Process.Kill()
	p.cmd.Wait()
	<-p.done
	logs := p.rawLogs()
	if !strings.Contains(logs, "serving") {
		t.Fatal("no logs captured")
	}
	for _, s := range []string{secret, urlTok} {
		if strings.Contains(help, s) || strings.Contains(logs, s) {
			t.Fatalf("secret %q printed", s)
		}
	}
}
