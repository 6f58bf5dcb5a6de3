package parquetfile

import (
	"sync"

	"github.com/klauspost/compress/zstd"
	"github.com/parquet-go/parquet-go/format"
)

// zstdCodec is parquet-go's compression codec interface over one pool of
// klauspost/compress encoders shared by every file sgload writes. The stock
// codec keeps a pool per writer and an 8 MiB window per encoder; a page is
// at most a few hundred KiB, so a 1 MiB window loses nothing and a flush with
// dozens of open files keeps a handful of encoders, not dozens.
type zstdCodec struct {
	level zstd.EncoderLevel
	enc   sync.Pool
	dec   sync.Pool
}

var (
	sharedZstd = &zstdCodec{level: zstd.SpeedFastest}
	strongZstd = &zstdCodec{level: zstd.SpeedBetterCompression}
)

func (c *zstdCodec) String() string                            { return "ZSTD" }
func (c *zstdCodec) CompressionCodec() format.CompressionCodec { return format.Zstd }

func (c *zstdCodec) Encode(dst, src []byte) ([]byte, error) {
	e, _ := c.enc.Get().(*zstd.Encoder)
	if e == nil {
		var err error
		e, err = zstd.NewWriter(nil, zstd.WithEncoderLevel(c.level), zstd.WithEncoderConcurrency(1),
			zstd.WithWindowSize(1<<20), zstd.WithZeroFrames(true), zstd.WithEncoderCRC(false))
		if err != nil {
			return nil, err
		}
	}
	defer c.enc.Put(e)
	return e.EncodeAll(src, dst[:0]), nil
}

func (c *zstdCodec) Decode(dst, src []byte) ([]byte, error) {
	d, _ := c.dec.Get().(*zstd.Decoder)
	if d == nil {
		var err error
		if d, err = zstd.NewReader(nil, zstd.WithDecoderConcurrency(1)); err != nil {
			return nil, err
		}
	}
	defer c.dec.Put(d)
	return d.DecodeAll(src, dst[:0])
}
