package main

import (
	"strings"
	"testing"
)

// TestViewsFlags: the warehouse options reach the SQL from flags and from
// their environment variables, and a bad combination exits 2 with a hint.
func TestViewsFlags(t *testing.T) {
	bucket := t.TempDir()
	tests := []struct {
		name string
		env  []string
		args []string
		code int
		want string // in stdout (exit 0) or stderr
	}{
		{"segment names", nil, []string{"--dialect", "duckdb", "--naming", "segment"}, exitOK, `CREATE OR REPLACE VIEW "sendgrid"."_open" AS`},
		{"stitch names from the environment", []string{"SGLOAD_NAMING=stitch"}, []string{"--dialect", "duckdb"}, exitOK, `"sendgrid"."data__category"`},
		{"latest-state views", nil, []string{"--dialect", "duckdb"}, exitOK, `CREATE OR REPLACE VIEW "sendgrid"."recipient_status" AS`},
		{"unknown naming", nil, []string{"--dialect", "duckdb", "--naming", "fivetran"}, exitUsage, "use sgload, segment or stitch"},
		{"bigquery location", nil, []string{"--dialect", "bigquery", "--bucket", "gs://acme-eu", "--location", "EU", "--no-discover"}, exitOK,
			"OPTIONS (location = 'EU')"},
		{"omni location from the connection", []string{"SGLOAD_BQ_CONNECTION=acme.aws-us-east-1.s3"}, []string{"--dialect", "bigquery", "--bucket", "s3://acme", "--no-discover"},
			exitOK, "OPTIONS (location = 'aws-us-east-1')"},
		{"omni location mismatch", []string{"SGLOAD_BQ_LOCATION=EU"}, []string{"--dialect", "bigquery", "--bucket", "s3://acme", "--connection", "acme.aws-us-east-1.s3", "--no-discover"},
			exitUsage, "differs from the connection's"},
		{"snowflake auto-refresh on gcs", nil, []string{"--dialect", "snowflake", "--bucket", "gs://acme", "--auto-refresh", "--no-discover"},
			exitUsage, "--notification-integration"},
		{"snowflake notification integration", []string{"SGLOAD_SF_NOTIFICATION_INTEGRATION=sgload_gcs"}, []string{"--dialect", "snowflake", "--bucket", "gs://acme", "--auto-refresh", "--no-discover"},
			exitOK, "INTEGRATION = 'SGLOAD_GCS'\nPARTITION BY"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"views"}, tc.args...)
			if !strings.Contains(strings.Join(tc.args, " "), "--bucket") {
				args = append(args, "--bucket", bucket)
			}
			stdout, stderr, code := runSgload(t, tc.env, args...)
			out := stdout
			if tc.code != exitOK {
				out = stderr
			}
			if code != tc.code || !strings.Contains(out, tc.want) {
				t.Fatalf("exit %d, want %d and %q in:\n%.2000s\n%s", code, tc.code, tc.want, stdout, stderr)
			}
		})
	}
}
