package main

import (
	"strings"
	"testing"

	"github.com/urfave/cli/v2"
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

// TestMinFreeBytesZeroMeansNoFloor: --min-free-bytes 0 used to mean the
// spool's default floor (1 GiB) without a word; now it means no floor, and
// serve says so in its log.
func TestMinFreeBytesZeroMeansNoFloor(t *testing.T) {
	floor := func(args ...string) int64 {
		var got int64
		app := &cli.App{Commands: []*cli.Command{{Name: "serve", Flags: serveFlags(),
			Action: func(c *cli.Context) error { got = freeFloor(c); return nil }}}}
		if err := app.Run(append([]string{"sgload", "serve"}, args...)); err != nil {
			t.Fatal(err)
		}
		return got
	}
	if got := floor(); got != 1<<30 {
		t.Errorf("default floor %d, want 1 GiB", got)
	}
	if got := floor("--min-free-bytes", "0"); got >= 0 {
		t.Errorf("--min-free-bytes 0 gives the spool %d, want no floor (negative)", got)
	}
	if got := floor("--min-free-bytes", "64MiB"); got != 64<<20 {
		t.Errorf("--min-free-bytes 64MiB gives %d", got)
	}
	p := startSgload(t, nil, "serve", "--spool", t.TempDir(), "--addr", "127.0.0.1:0", "--insecure-no-auth", "--min-free-bytes", "0")
	p.waitLog(t, "no free-space floor")
}
