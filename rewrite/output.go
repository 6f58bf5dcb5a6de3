package rewrite

import (
	"bufio"
	"crypto/md5"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"

	"github.com/sgload/sgload/parquetfile"
	"github.com/sgload/sgload/schema"
)

// outputs writes a partition's rows, in the order given, into local files
// of about target bytes, each made of row groups of at most groupRows rows
// or groupBytes bytes, whichever comes first.
type outputs struct {
	table      *schema.Table
	dir        string
	target     int64
	groupRows  int
	groupBytes int64

	files []outFile
	cur   *outFile
	f     *os.File
	bw    *bufio.Writer
	sum   hash.Hash
	count *countWriter
	w     *parquetfile.Writer
	batch *schema.Batch
}

// outFile is one finished local file.
type outFile struct {
	path           string
	rows, bytes    int64
	md5            []byte
	minSeq, maxSeq int64
}

type countWriter struct{ n int64 }

func (c *countWriter) Write(p []byte) (int, error) { c.n += int64(len(p)); return len(p), nil }

func newOutputs(t *schema.Table, dir string, target, groupBytes int64, groupRows int) *outputs {
	return &outputs{table: t, dir: dir, target: target, groupRows: groupRows, groupBytes: groupBytes, batch: schema.NewBatch(t)}
}

func (o *outputs) add(b *schema.Batch, row int) error {
	if o.f == nil {
		if err := o.open(); err != nil {
			return err
		}
	}
	o.batch.AppendRow(b, row)
	if o.batch.Len() >= o.groupRows || int64(o.batch.Bytes()) >= o.groupBytes {
		return o.flushGroup()
	}
	return nil
}

func (o *outputs) open() error {
	path := filepath.Join(o.dir, fmt.Sprintf("out-%04d.parquet", len(o.files)))
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("rewrite output: %w", err)
	}
	o.f, o.sum, o.count = f, md5.New(), &countWriter{}
	o.bw = bufio.NewWriterSize(io.MultiWriter(f, o.sum, o.count), 256<<10)
	if o.w == nil {
		o.w = parquetfile.NewWriter(o.bw, o.table, parquetfile.Options{BloomColumns: parquetfile.LookupColumns})
	} else {
		o.w.Reset(o.bw)
	}
	o.cur = &outFile{path: path}
	return nil
}

// flushGroup writes the buffered rows as a row group, and closes the file
// once it has reached the target size.
func (o *outputs) flushGroup() error {
	b := o.batch
	if b.Len() == 0 {
		return nil
	}
	seqs := b.Column(o.table.MustIndex("_sequence")).Ints[:b.Len()]
	for i, s := range seqs {
		if o.cur.rows == 0 && i == 0 || s < o.cur.minSeq {
			o.cur.minSeq = s
		}
		o.cur.maxSeq = max(o.cur.maxSeq, s)
	}
	o.cur.rows += int64(b.Len())
	if err := o.w.WriteRowGroup(b); err != nil {
		return err
	}
	b.Reset()
	if o.count.n >= o.target {
		return o.closeFile()
	}
	return nil
}

func (o *outputs) closeFile() error {
	err := o.w.Close()
	if err == nil {
		err = o.bw.Flush()
	}
	if cerr := o.f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("write %s: %w", o.cur.path, err)
	}
	o.cur.bytes, o.cur.md5 = o.count.n, o.sum.Sum(nil)
	o.files = append(o.files, *o.cur)
	o.f, o.cur = nil, nil
	return nil
}

// finish writes what is buffered and returns every file.
func (o *outputs) finish() ([]outFile, error) {
	if o.f != nil {
		if err := o.flushGroup(); err != nil {
			return nil, err
		}
		if o.f != nil {
			if err := o.closeFile(); err != nil {
				return nil, err
			}
		}
	}
	return o.files, nil
}
