package parquetfile

import (
	"github.com/klauspost/compress/zstd"
	"github.com/parquet-go/parquet-go/format"
)

// zstdCodec is parquet-go's compression codec interface over one set of
// klauspost/compress encoders shared by every file sgload writes. The stock
// codec keeps a pool per writer and an 8 MiB window per encoder; a page is
// at most a few hundred KiB, so a 1 MiB window loses nothing and a flush with
// dozens of open files keeps a handful of encoders, not dozens.
//
// Idle encoders wait in a channel, not a sync.Pool: flush runs under a heap
// limit and so collects garbage often, every collection empties a
// sync.Pool, and a new encoder allocates its tables again (a tenth of all
// the bytes a flush allocated, when they were pooled).
type zstdCodec struct {
	level zstd.EncoderLevel
	enc   chan *zstd.Encoder
	dec   chan *zstd.Decoder
}

// idleCoders is how many encoders (and decoders) each codec keeps: more
// than the goroutines that compress at once, which is the number of
// flush's writers.
const idleCoders = 8

var (
	sharedZstd = newZstdCodec(zstd.SpeedFastest)
	strongZstd = newZstdCodec(zstd.SpeedBetterCompression)
)

func newZstdCodec(level zstd.EncoderLevel) *zstdCodec {
	return &zstdCodec{level: level, enc: make(chan *zstd.Encoder, idleCoders), dec: make(chan *zstd.Decoder, idleCoders)}
}

func (c *zstdCodec) String() string                            { return "ZSTD" }
func (c *zstdCodec) CompressionCodec() format.CompressionCodec { return format.Zstd }

func (c *zstdCodec) Encode(dst, src []byte) ([]byte, error) {
	var e *zstd.Encoder
	select {
	case e = <-c.enc:
	default:
		var err error
		e, err = zstd.NewWriter(nil, zstd.WithEncoderLevel(c.level), zstd.WithEncoderConcurrency(1),
			zstd.WithWindowSize(1<<20), zstd.WithZeroFrames(true), zstd.WithEncoderCRC(false))
		if err != nil {
			return nil, err
		}
	}
	dst = e.EncodeAll(src, dst[:0])
	select {
	case c.enc <- e:
	default: // as many idle as kept: let this one go
	}
	return dst, nil
}

func (c *zstdCodec) Decode(dst, src []byte) ([]byte, error) {
	var d *zstd.Decoder
	select {
	case d = <-c.dec:
	default:
		var err error
		if d, err = zstd.NewReader(nil, zstd.WithDecoderConcurrency(1)); err != nil {
			return nil, err
		}
	}
	dst, err := d.DecodeAll(src, dst[:0])
	select {
	case c.dec <- d:
	default:
	}
	return dst, err
}
