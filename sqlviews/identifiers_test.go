package sqlviews

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/sgload/sgload/internal/duckcheck"
	"github.com/sgload/sgload/internal/testbucket"
	"github.com/sgload/sgload/layout"
	"github.com/sgload/sgload/loader"
	"github.com/sgload/sgload/schema"
	"github.com/sgload/sgload/spool"
	"github.com/sgload/sgload/spool/spooltest"
)

// reserved reads a dialect's reserved words (testdata/sqlviews/reserved/,
// each file naming its source), upper case.
func reserved(t testing.TB, d Dialect) map[string]bool {
	t.Helper()
	f, err := os.Open("../testdata/sqlviews/reserved/" + string(d) + ".txt")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := map[string]bool{}
	sourced := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if strings.HasPrefix(line, "#") {
			sourced = sourced || strings.Contains(line, "https://")
			continue
		}
		if line != "" {
			out[strings.ToUpper(strings.Fields(line)[0])] = true
		}
	}
	if !sourced || len(out) < 50 {
		t.Fatalf("%s reserved words: %d words, source named: %v", d, len(out), sourced)
	}
	return out
}

// allReserved is every reserved word of every dialect, lower case, as event
// types: a new event type found in a bucket can be any of them.
func allReserved(t testing.TB) []string {
	set := map[string]bool{}
	for _, d := range Dialects {
		for w := range reserved(t, d) {
			set[schema.TableName(w)] = true
		}
	}
	out := make([]string, 0, len(set))
	for w := range set {
		out = append(out, w)
	}
	sort.Strings(out)
	return out
}

// TestReservedWordLists: the DuckDB list is DuckDB's own (duckdb_keywords()
// of the DuckDB the tests run), and sgload's unquoted local names are in
// no list.
func TestReservedWordLists(t *testing.T) {
	want := reserved(t, DuckDB)
	db := duckcheck.Open(t)
	got := map[string]bool{}
	for _, r := range duckcheck.Rows(t, db, "SELECT upper(keyword_name) FROM duckdb_keywords() WHERE keyword_category <> 'unreserved'") {
		got[r[0].(string)] = true
	}
	for w := range got {
		if !want[w] {
			t.Errorf("DuckDB reserves %s; testdata/sqlviews/reserved/duckdb.txt lacks it", w)
		}
	}
	for w := range want {
		if !got[w] {
			t.Errorf("testdata/sqlviews/reserved/duckdb.txt lists %s; DuckDB does not reserve it", w)
		}
	}
	if !reserved(t, Snowflake)["ROWS"] {
		t.Error("the Snowflake list lacks ROWS")
	}
	for _, d := range Dialects {
		for name := range localNames {
			if reserved(t, d)[strings.ToUpper(name)] {
				t.Errorf("local name %s is reserved in %s", name, d)
			}
		}
	}
}

type token struct {
	kind byte // 'w' word, 'q' quoted identifier, 's' string, 'o' other
	text string
}

// tokens splits SQL into words, quoted identifiers and string literals,
// leaving out comments.
func tokens(sql string) []token {
	var out []token
	for i := 0; i < len(sql); {
		c := sql[i]
		switch {
		case c == '-' && strings.HasPrefix(sql[i:], "--"):
			for i < len(sql) && sql[i] != '\n' {
				i++
			}
		case c == '\'' || c == '"' || c == '`':
			j := i + 1
			for j < len(sql) {
				if sql[j] == c {
					if j+1 < len(sql) && sql[j+1] == c && c != '`' {
						j += 2
						continue
					}
					break
				}
				j++
			}
			kind := byte('q')
			if c == '\'' {
				kind = 's'
			}
			out = append(out, token{kind, sql[i+1 : j]})
			i = j + 1
		case c == '_' || (c|0x20 >= 'a' && c|0x20 <= 'z'):
			j := i
			for j < len(sql) && (sql[j] == '_' || sql[j] == '$' || (sql[j]|0x20 >= 'a' && sql[j]|0x20 <= 'z') || (sql[j] >= '0' && sql[j] <= '9')) {
				j++
			}
			out = append(out, token{'w', sql[i:j]})
			i = j
		default:
			out = append(out, token{'o', string(c)})
			i++
		}
	}
	return out
}

// lowerSyntax are the lower-case words each dialect's SQL may hold
// unquoted that are not names: DuckDB extension and secret provider names,
// BigQuery's OPTIONS keys (as its documentation writes them).
var lowerSyntax = map[Dialect]map[string]bool{
	DuckDB:    {"aws": true, "httpfs": true, "azure": true, "s3": true, "gcs": true, "credential_chain": true},
	BigQuery:  {"format": true, "uris": true, "hive_partition_uri_prefix": true, "require_hive_partition_filter": true, "enable_list_inference": true, "location": true},
	Snowflake: {},
}

// identifierOptions are options that make sgload write every kind of name
// it writes: every reserved word of every dialect as an event type, every
// collection, each naming.
func identifierOptions(t testing.TB, d Dialect, n Naming) Options {
	o := goldenOptions[d]
	o.Dialect, o.Naming = d, n
	o.EventTypes = append(allReserved(t), "2fa", "Order By", "brand_new_event")
	if d == BigQuery {
		o.Location = "EU"
	}
	return o
}

// TestIdentifiersAreQuoted: every name sgload writes (tables, views,
// columns, aliases, event types found in a bucket) is quoted, so no
// reserved word of any dialect can break a statement. sgload writes SQL
// syntax in upper case and every name it derives in lower case, so an
// unquoted lower-case word is a name left unquoted, except the local names
// (checked against every list above) and a few lower-case words of syntax.
// Every column sgload declares that a dialect reserves is checked by name.
func TestIdentifiersAreQuoted(t *testing.T) {
	for _, d := range Dialects {
		res := reserved(t, d)
		for _, n := range Namings {
			t.Run(string(d)+"/"+string(n), func(t *testing.T) {
				sql, err := Generate(identifierOptions(t, d, n))
				if err != nil {
					t.Fatal(err)
				}
				unquoted := map[string]int{}
				quoted := map[string]bool{}
				// A Snowflake stage reference ends in a path, not a name.
				text := stagePath.ReplaceAllString(string(sql), "$1")
				for _, tk := range tokens(text) {
					switch tk.kind {
					case 'q':
						for _, part := range strings.Split(tk.text, ".") { // BigQuery quotes project.dataset.table whole
							quoted[strings.ToUpper(part)] = true
						}
					case 'w':
						if tk.text != strings.ToUpper(tk.text) && !localNames[tk.text] && !lowerSyntax[d][tk.text] {
							unquoted[tk.text]++
						}
					}
				}
				if len(unquoted) > 0 {
					t.Errorf("names written without quotes: %v", unquoted)
				}
				// Each reserved word that sgload writes as a name is quoted
				// wherever it appears: ROWS (sync_snapshots.rows), every
				// event type named after a reserved word.
				var hits []string
				for w := range res {
					if quoted[w] {
						hits = append(hits, w)
					}
				}
				if len(hits) < len(res)/2 {
					t.Errorf("only %d of %d reserved words written as (quoted) names", len(hits), len(res))
				}
			})
		}
	}
}

var stagePath = regexp.MustCompile(`(@\S+?")/\S*`)

// TestReservedColumnsQuoted checks, for each dialect's list, that every
// column sgload declares whose name that dialect reserves is written
// quoted: Snowflake's sync_snapshots.rows was written bare, and failed.
func TestReservedColumnsQuoted(t *testing.T) {
	names := map[string]bool{}
	for _, c := range schema.EventColumns() {
		names[c.Name] = true
	}
	for _, c := range append(schema.CollectionNames(), schema.Snapshots.Name) {
		coll := schema.Collections[c]
		if coll == nil {
			coll = schema.Snapshots
		}
		for _, col := range coll.Table().Columns {
			names[col.Name] = true
		}
	}
	for _, d := range Dialects {
		res := reserved(t, d)
		o := goldenOptions[d]
		o.Dialect = d
		sql, err := Generate(o)
		if err != nil {
			t.Fatal(err)
		}
		checked := 0
		for name := range names {
			if !res[strings.ToUpper(name)] {
				continue
			}
			checked++
			bare := regexp.MustCompile(`(^|[^"` + "`" + `\w$])` + name + `([^"` + "`" + `\w$]|$)`)
			for _, line := range strings.Split(string(sql), "\n") {
				if strings.HasPrefix(strings.TrimSpace(line), "--") {
					continue
				}
				// Outside string literals (the Parquet field in VALUE:"rows" is a path, not a name).
				if m := bare.FindString(stripStrings(line)); m != "" {
					t.Errorf("%s: column %s written bare: %s", d, name, strings.TrimSpace(line))
					break
				}
			}
		}
		if d == Snowflake && checked == 0 {
			t.Error("no Snowflake-reserved column checked (sync_snapshots.rows is one)")
		}
	}
}

// stripStrings blanks string literals and Snowflake's VALUE:"field" paths.
func stripStrings(line string) string {
	line = regexp.MustCompile(`'[^']*'`).ReplaceAllString(line, "''")
	return regexp.MustCompile(`VALUE:"[^"]*"`).ReplaceAllString(line, "VALUE:x")
}

// TestReservedEventTypesInDuckDB flushes events whose types are reserved
// words, writes the SQL with every reserved word of every dialect as an
// event type, and runs it in DuckDB; the reserved-word views answer.
func TestReservedEventTypesInDuckDB(t *testing.T) {
	b := testbucket.Open(t, "file")
	var lines [][]byte
	for i, typ := range []string{"select", "from", "order", "group", "rows", "2fa"} {
		lines = append(lines, []byte(fmt.Sprintf(`{"event":%q,"email":"r%d@example.com","timestamp":1767225600,"sg_event_id":"rw-%d","sg_message_id":"m%d"}`, typ, i, i, i)))
	}
	root := t.TempDir()
	spooltest.Fill(t, root, lines, spooltest.Options{Node: "rw"})
	if _, err := loader.Flush(context.Background(), loader.Options{Spool: spool.Dir{Root: root}, Bucket: b.Bucket}); err != nil {
		t.Fatal(err)
	}
	found, err := layout.EventTypes(context.Background(), b.Bucket, "")
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range Namings {
		o := Options{Dialect: DuckDB, Bucket: b.Dir, Naming: n, EventTypes: append(allReserved(t), found...), Collections: []string{}}
		var sql bytes.Buffer
		if err := Write(&sql, o); err != nil {
			t.Fatal(err)
		}
		db := duckcheck.Open(t)
		duckcheck.Exec(t, db, sql.String())
		for _, typ := range []string{"select", "from", "order", "group", "rows", "2fa"} {
			if got := duckcheck.Int(t, db, fmt.Sprintf(`SELECT count(*) FROM sendgrid."%s"`, typ)); got != 1 {
				t.Errorf("%s: view %q has %d rows, want 1", n, typ, got)
			}
		}
		if got := duckcheck.Int(t, db, "SELECT count(*) FROM sendgrid.message_status"); got != 6 {
			t.Errorf("%s: message_status has %d rows, want 6", n, got)
		}
	}
}
