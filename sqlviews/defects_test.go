package sqlviews

import (
	"regexp"
	"strings"
	"testing"
)

// externalTables returns the CREATE EXTERNAL TABLE statements of sql.
func externalTables(sql string) []string {
	var out []string
	for _, s := range strings.Split(sql, ";\n") {
		if i := strings.Index(s, "CREATE OR REPLACE EXTERNAL TABLE"); i >= 0 {
			out = append(out, s[i:])
		}
	}
	return out
}

// TestSnowflakeExternalTableClauseOrder: Snowflake's grammar for CREATE
// EXTERNAL TABLE is columns, cloudProviderParams (INTEGRATION = '…'),
// PARTITION BY, LOCATION, REFRESH_ON_CREATE, AUTO_REFRESH, PATTERN,
// FILE_FORMAT (docs.snowflake.com/en/sql-reference/sql/create-external-table).
// sgload printed FILE_FORMAT before AUTO_REFRESH.
func TestSnowflakeExternalTableClauseOrder(t *testing.T) {
	order := []string{"\n)\n", "INTEGRATION = ", "PARTITION BY (", "LOCATION = @", "AUTO_REFRESH = ", "FILE_FORMAT = ("}
	for _, o := range []Options{
		{Dialect: Snowflake, Bucket: "s3://acme-sendgrid?region=us-east-1", Prefix: "sendgrid"},
		{Dialect: Snowflake, Bucket: "s3://acme-sendgrid", AutoRefresh: true},
		{Dialect: Snowflake, Bucket: "gs://acme-sendgrid", AutoRefresh: true, NotificationIntegration: "sgload_gcs_events"},
		{Dialect: Snowflake, Bucket: "azblob://sendgrid?storage_account=acme", AutoRefresh: true, NotificationIntegration: "sgload_azure_events"},
	} {
		sql, err := Generate(o)
		if err != nil {
			t.Fatalf("%s: %v", o.Bucket, err)
		}
		tables := externalTables(string(sql))
		if len(tables) < 2 {
			t.Fatalf("%s: %d external tables", o.Bucket, len(tables))
		}
		for _, st := range tables {
			last := -1
			for _, clause := range order {
				i := strings.Index(st, clause)
				if i < 0 {
					continue // optional clauses
				}
				if i < last {
					t.Errorf("%s: %q is out of the grammar's order (columns, INTEGRATION, PARTITION BY, LOCATION, AUTO_REFRESH, FILE_FORMAT) in:\n%s", o.Bucket, clause, st)
				}
				last = i
			}
		}
	}
}

// TestSnowflakeAutoRefreshNeedsItsIntegration: AUTO_REFRESH on a GCS or
// Azure stage works only through a notification integration, named in
// each external table (INTEGRATION = '<name>'); S3 uses the table's own SQS
// queue and takes none.
func TestSnowflakeAutoRefreshNeedsItsIntegration(t *testing.T) {
	for _, bucket := range []string{"gs://acme-sendgrid", "azblob://sendgrid?storage_account=acme"} {
		if _, err := Generate(Options{Dialect: Snowflake, Bucket: bucket, AutoRefresh: true}); err == nil || !strings.Contains(err.Error(), "--notification-integration") {
			t.Errorf("%s --auto-refresh without an integration: err = %v, want one naming --notification-integration", bucket, err)
		}
		sql, err := Generate(Options{Dialect: Snowflake, Bucket: bucket, AutoRefresh: true, NotificationIntegration: "sgload_events"})
		if err != nil {
			t.Fatal(err)
		}
		for _, st := range externalTables(string(sql)) {
			if !strings.Contains(st, "\nINTEGRATION = 'SGLOAD_EVENTS'\n") || !strings.Contains(st, "AUTO_REFRESH = TRUE") {
				t.Errorf("%s: external table without its notification integration:\n%s", bucket, st)
			}
		}
		// Without automatic refresh, no integration is needed or written.
		sql, err = Generate(Options{Dialect: Snowflake, Bucket: bucket})
		if err != nil || strings.Contains(string(sql), "INTEGRATION = '") {
			t.Errorf("%s without --auto-refresh: err %v, integration written: %v", bucket, err, strings.Contains(string(sql), "INTEGRATION = '"))
		}
	}
	sql, err := Generate(Options{Dialect: Snowflake, Bucket: "s3://acme-sendgrid", AutoRefresh: true, NotificationIntegration: "ignored"})
	if err != nil || strings.Contains(string(sql), "INTEGRATION = '") {
		t.Errorf("s3: err %v; an S3 external table takes no INTEGRATION", err)
	}
	if _, err := Generate(Options{Dialect: Snowflake, Bucket: "gs://b", AutoRefresh: true, NotificationIntegration: "x'; DROP"}); err == nil {
		t.Error("a notification integration that is not a name was accepted")
	}
}

// TestBigQueryDatasetLocation: external tables must be in their bucket's
// location (BigQuery Omni: the connection's), and so must the dataset that
// holds them; CREATE SCHEMA without OPTIONS(location) puts it in the default
// location (US), where an Omni or EU table cannot be made.
func TestBigQueryDatasetLocation(t *testing.T) {
	schemaStmt := regexp.MustCompile("(?s)CREATE SCHEMA IF NOT EXISTS `[^`]+`(\nOPTIONS \\(location = '([^']+)'\\))?;")
	for _, c := range []struct {
		name string
		o    Options
		want string // location, "" for none, "error" for an error
	}{
		{"omni on s3: the connection's location", Options{Bucket: "s3://acme-sendgrid", Connection: "acme.aws-us-east-1.sgload_s3"}, "aws-us-east-1"},
		{"omni on azure", Options{Bucket: "azblob://sendgrid?storage_account=acme", Connection: "acme.azure-eastus2.sgload_az"}, "azure-eastus2"},
		{"connection as a resource name", Options{Bucket: "s3://b", Connection: "projects/acme/locations/aws-eu-west-1/connections/c"}, "aws-eu-west-1"},
		{"omni, the same location given", Options{Bucket: "s3://b", Connection: "acme.aws-us-east-1.c", Location: "AWS-US-EAST-1"}, "AWS-US-EAST-1"},
		{"omni, another location given", Options{Bucket: "s3://b", Connection: "acme.aws-us-east-1.c", Location: "EU"}, "error"},
		{"omni, a connection without its location", Options{Bucket: "s3://b", Connection: "c"}, "error"},
		{"an EU bucket", Options{Bucket: "gs://acme-eu", Location: "EU"}, "EU"},
		{"a US bucket, no location", Options{Bucket: "gs://acme"}, ""},
		{"a location that is not one", Options{Bucket: "gs://acme", Location: "EU'); DROP"}, "error"},
	} {
		c.o.Dialect, c.o.Schema = BigQuery, "acme.sendgrid"
		sql, err := Generate(c.o)
		if c.want == "error" {
			if err == nil {
				t.Errorf("%s: no error", c.name)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", c.name, err)
			continue
		}
		m := schemaStmt.FindStringSubmatch(string(sql))
		if m == nil || m[2] != c.want {
			t.Errorf("%s: CREATE SCHEMA with location %q, want %q:\n%s", c.name, m, c.want, sql[:min(len(sql), 600)])
		}
	}
}
