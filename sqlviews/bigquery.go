package sqlviews

import (
	"errors"
	"fmt"
	"strings"

	"github.com/sgload/sgload/schema"
)

type bigquery struct{}

func (bigquery) typ(k schema.Kind) string {
	return map[schema.Kind]string{schema.String: "STRING", schema.Int64: "INT64", schema.Bool: "BOOL",
		schema.Timestamp: "TIMESTAMP", schema.StringList: "ARRAY<STRING>"}[k]
}

func (bigquery) ident(name string) string { return "`" + name + "`" }

func (bigquery) table(g *gen, name string) string { return "`" + g.o.Schema + "." + name + "`" }

// qualify: BigQuery wants a WHERE, GROUP BY or HAVING beside QUALIFY.
func (bigquery) qualify() string { return "\nWHERE TRUE" }

func (bigquery) starExcept(cols ...string) string {
	return "* EXCEPT (" + strings.Join(cols, ", ") + ")"
}

func (bigquery) uri(l location, path string) (string, error) {
	switch l.scheme {
	case "gs":
		return "gs://" + l.bucket + "/" + path, nil
	case "s3":
		return "s3://" + l.bucket + "/" + path, nil
	case "azblob":
		if l.account == "" {
			return "", errors.New("azblob bucket: set AZURE_STORAGE_ACCOUNT (or storage_account in the URL) to name the account")
		}
		return fmt.Sprintf("azure://%s.blob.core.windows.net/%s/%s", l.account, l.bucket, path), nil
	}
	return "", fmt.Errorf("BigQuery cannot read %s buckets; flush to gs:// (or s3:// and azblob:// through BigQuery Omni)", l.scheme)
}

func (b bigquery) preamble(g *gen) ([]stmt, error) {
	if g.loc.scheme != "gs" && g.o.Connection == "" {
		if _, err := b.uri(g.loc, ""); err != nil {
			return nil, err
		}
		return nil, fmt.Errorf("BigQuery reads %s buckets only through BigQuery Omni: pass --connection project.region.connection", g.loc.scheme)
	}
	return []stmt{{sql: "CREATE SCHEMA IF NOT EXISTS `" + g.o.Schema + "`"}}, nil
}

func (b bigquery) rawEvents(g *gen) ([]stmt, error) {
	st, err := b.externalTable(g, "events_raw", schema.EventColumns(), []string{"event_type STRING", "dt DATE"}, "events")
	if err != nil {
		return nil, err
	}
	st.comment = "All event files, every type, with the schema declared (not inferred from one file).\nevent_type and dt are hive partition keys in the path: filter on them to prune files.\nNew files and new event types are visible at once; nothing to run after a flush."
	return []stmt{st}, nil
}

func (bigquery) rawStar() string { return "*" }

func (b bigquery) rawObjects(g *gen, t *schema.Table, name string) ([]stmt, error) {
	st, err := b.externalTable(g, name, t.Columns, []string{"dt DATE"}, "objects", t.Name)
	if err != nil {
		return nil, err
	}
	return []stmt{st}, nil
}

// externalTable declares a hive-partitioned Parquet external table over the
// files under the bucket path dirs, with the columns declared rather than
// inferred from one file.
func (b bigquery) externalTable(g *gen, name string, cols []schema.Column, partitions []string, dirs ...string) (stmt, error) {
	files, err := b.uri(g.loc, under(g.o.Prefix, append(dirs, "*")...))
	if err != nil {
		return stmt{}, err
	}
	prefix, _ := b.uri(g.loc, under(g.o.Prefix, dirs...))
	conn := ""
	if g.o.Connection != "" {
		conn = "\nWITH CONNECTION `" + g.o.Connection + "`"
	}
	return stmt{sql: fmt.Sprintf(`CREATE OR REPLACE EXTERNAL TABLE %s (
%s
)
WITH PARTITION COLUMNS (
  %s
)%s
OPTIONS (
  format = 'PARQUET',
  uris = ['%s'],
  hive_partition_uri_prefix = '%s',
  require_hive_partition_filter = FALSE,
  enable_list_inference = TRUE
)`, b.table(g, name), strings.Join(columnDefs(b, cols), ",\n"), strings.Join(partitions, ",\n  "), conn, files, prefix)}, nil
}
