package loader

import (
	"bytes"
	"cmp"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/sgload/sgload/internal/duckcheck"
	"github.com/sgload/sgload/internal/testbucket"
	"github.com/sgload/sgload/layout"
	"github.com/sgload/sgload/spool/spooltest"
)

// TestSpillSortsEachPartition: whatever the blocks (full ones, ones the
// budget cuts short, entries larger than a read window or a block) and
// however the workers split the entries, a partition comes back whole, each
// entry intact, in order: by email, none last, then by ordinal; a partition
// nothing was written to comes back empty.
func TestSpillSortsEachPartition(t *testing.T) {
	for _, tc := range []struct {
		name    string
		workers int
		parts   int
		n       int
		rawMax  int
		fanIn   int
	}{
		{"one worker, one partition", 1, 1, 3000, 600, 0},
		{"two workers, blocks full and cut by the budget", 2, 40, 30000, 900, 0},
		{"entries larger than a read window and a block", 2, 3, 40, 3 * spillBlockBytes / 2, 0},
		{"more runs than the fan-in: merged in passes", 2, 1, 40000, 900, 3},
		{"empty", 2, 1, 0, 10, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.fanIn > 0 {
				defer func(n int) { spillFanIn = n }(spillFanIn)
				spillFanIn = tc.fanIn
			}
			rng := rand.New(rand.NewPCG(1, uint64(tc.n)))
			emails := []string{"", "a@x", "a@x.org", "anna.longname@example.com", "anna.longname@example.co", "anna.longname@example.org", "b@y", "zed@z"}
			var writers []*spillWriter
			for w := range tc.workers {
				s, err := newSpillWriter(t.TempDir(), w)
				if err != nil {
					t.Fatal(err)
				}
				defer s.f.Close()
				writers = append(writers, s)
			}
			want := map[layout.Partition][]spillEntry{}
			for i := range tc.n {
				k := layout.Partition{Kind: layout.Events, Table: "open", Day: int32(i % tc.parts)}
				e := spillEntry{ordinal: int64(i), seq: int64(1000 + i), recv: rng.Int64() - 1<<62, node: []byte("n1"),
					email: []byte(emails[rng.IntN(len(emails))]), raw: []byte(strings.Repeat(fmt.Sprint(i%10), 1+rng.IntN(tc.rawMax)))}
				if len(e.email) == 0 {
					e.email = nil
				}
				if i%7 == 0 {
					e.extra = []byte("logs_api")
				}
				want[k] = append(want[k], e)
				// Records go to workers round robin, as in pass 1.
				if err := writers[(i/5)%tc.workers].add(k, &e); err != nil {
					t.Fatal(err)
				}
			}
			for _, s := range writers {
				if err := s.finish(); err != nil {
					t.Fatal(err)
				}
			}
			none := layout.Partition{Kind: layout.Events, Table: "never-written"}
			if m, err := newSpillMerge(t.TempDir(), writers, none); err != nil {
				t.Fatal(err)
			} else if e, err := m.next(); e != nil || err != nil {
				t.Fatalf("a partition never written gave %v, %v", e, err)
			}
			for k, es := range want {
				slices.SortFunc(es, wantOrder)
				dir := t.TempDir()
				m, err := newSpillMerge(dir, writers, k)
				if err != nil {
					t.Fatal(err)
				}
				if tc.fanIn > 0 && len(m.files) < 2 {
					t.Errorf("%v: %d merge passes for %d runs, want at least 2", k, len(m.files), len(writers[0].blocks[k])+len(writers[1].blocks[k]))
				}
				for i := 0; ; i++ {
					e, err := m.next()
					if err != nil {
						t.Fatal(err)
					}
					if e == nil {
						if i != len(es) {
							t.Fatalf("%v: %d entries back, want %d", k, i, len(es))
						}
						m.close()
						if left, _ := os.ReadDir(dir); len(left) != 0 {
							t.Errorf("close left %d merge files", len(left))
						}
						break
					}
					w := es[i]
					if e.ordinal != w.ordinal || e.seq != w.seq || e.recv != w.recv || !bytes.Equal(e.node, w.node) ||
						!bytes.Equal(e.extra, w.extra) || !bytes.Equal(e.email, w.email) || !bytes.Equal(e.raw, w.raw) {
						t.Fatalf("%v: entry %d is ordinal %d (%q), want ordinal %d (%q)", k, i, e.ordinal, e.email, w.ordinal, w.email)
					}
				}
			}
		})
	}
}

// wantOrder is the order the spill promises, written plainly (bytes.Compare,
// no prefixes): by email, none last, then by ordinal.
func wantOrder(a, b spillEntry) int {
	if (a.email == nil) != (b.email == nil) {
		if a.email == nil {
			return 1
		}
		return -1
	}
	if c := bytes.Compare(a.email, b.email); c != 0 {
		return c
	}
	return cmp.Compare(a.ordinal, b.ordinal)
}

// TestSpillCutShort: a spill file that ends inside an entry is an error,
// not a short partition.
func TestSpillCutShort(t *testing.T) {
	s, err := newSpillWriter(t.TempDir(), 0)
	if err != nil {
		t.Fatal(err)
	}
	defer s.f.Close()
	k := layout.Partition{Kind: layout.Events, Table: "open"}
	for i := range 100 {
		if err := s.add(k, &spillEntry{ordinal: int64(i), email: []byte("a@x"), raw: bytes.Repeat([]byte("x"), 500)}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.finish(); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(s.path, s.off-10); err != nil {
		t.Fatal(err)
	}
	m, err := newSpillMerge(t.TempDir(), []*spillWriter{s}, k)
	if err != nil {
		t.Fatal(err)
	}
	for {
		e, err := m.next()
		if err != nil {
			return
		}
		if e == nil {
			t.Fatal("a cut spill file read as complete")
		}
	}
}

// TestRowOrderIsBytewise: the prefixes and lengths give bytes.Compare's
// answer, around both prefix boundaries and for NUL bytes.
func TestRowOrderIsBytewise(t *testing.T) {
	emails := []string{"a", "a\x00", "ab", "abcdefgh", "abcdefgh\x00", "abcdefghi", "abcdefgz", "abcdefghijklmnop",
		"abcdefghijklmnop\x00", "abcdefghijklmnopa", "abcdefghijklmnopq", "abcdefghijklmnoz", "b", "\xff\xff"}
	for _, a := range emails {
		for _, b := range emails {
			pa, pb := emailPrefix([]byte(a)), emailPrefix([]byte(b))
			want := strings.Compare(a, b)
			if got := rowOrder(pa, pb, []byte(a), []byte(b), 1, 1); got != want {
				t.Errorf("rowOrder(%q, %q) = %d, want %d", a, b, got, want)
			}
		}
	}
}

// TestFilesSortedByEmail: in every file flush writes, rows are in email
// order (bytewise, as DuckDB compares text), rows without one (null or
// empty; a number would be too) last, and among one address in the order
// they were received.
func TestFilesSortedByEmail(t *testing.T) {
	b := testbucket.Open(t, "file")
	root := t.TempDir()
	fillSpool(t, root, spooltest.Lines(t, "../testdata/events/sample-2000.ndjson", "../testdata/events/drift.ndjson"), 50, 256<<10)
	if _, err := Flush(context.Background(), flushOpts(root, b, "p")); err != nil {
		t.Fatal(err)
	}
	db := duckcheck.Open(t)
	rows := duckcheck.Rows(t, db, fmt.Sprintf(`SELECT count(*), count(DISTINCT filename), count(*) FILTER (WHERE
		  prev_null AND email IS NOT NULL OR prev > email OR prev = email AND prev_seq > _sequence)
		FROM (SELECT filename, nullif(email, '') AS email, _sequence,
		        lag(email) OVER w AS prev, lag(email IS NULL) OVER w AS prev_null, lag(_sequence) OVER w AS prev_seq
		      FROM read_parquet('%s', filename = true, file_row_number = true)
		      WINDOW w AS (PARTITION BY filename ORDER BY file_row_number))`,
		filepath.Join(b.Dir, "p", "events", "*", "*", "*.parquet")))
	n, files, unordered := rows[0][0].(int64), rows[0][1].(int64), rows[0][2].(int64)
	if n < 2000 || files < 10 {
		t.Fatalf("%d rows in %d files: the spool did not flush", n, files)
	}
	if unordered != 0 {
		t.Errorf("%d of %d rows out of email order", unordered, n)
	}
}
