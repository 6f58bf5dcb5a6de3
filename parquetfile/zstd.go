package parquetfile

import (
	"github.com/klauspost/compress/zstd"
	"github.com/parquet-go/parquet-go/format"
)

// zstdCodec is parquet-go's compression codec interface over one set of
// klauspost/compress encoders shared by every file sgload writes. The stock
// codec keeps a pool per writer and an 8 MiB window per encoder; a page is
// at most Options.PageBytes (1 MiB), so a 1 MiB window loses nothing and a
// flush with dozens of open files keeps a handful of encoders, not dozens.
//
// Idle encoders wait in a channel, not a sync.Pool: flush runs under a heap
// limit and so collects garbage often, every collection empties a
// sync.Pool, and a new encoder allocates its tables again (a tenth of all
// the bytes a flush allocated, when they were pooled).
type zstdCodec struct {
	level zstd.EncoderLevel
	enc   idle[*zstd.Encoder]
	dec   idle[*zstd.Decoder]
}

// idle holds up to idleCoders coders nobody is using.
type idle[T any] chan T

// idleCoders is how many encoders (and decoders) each codec keeps: more
// than the goroutines that compress at once, which is the number of
// flush's writers.
const idleCoders = 8

// get returns an idle coder, or a new one.
func (c idle[T]) get(create func() (T, error)) (T, error) {
	select {
	case x := <-c:
		return x, nil
	default:
		return create()
	}
}

// put keeps x for the next get, unless as many are idle as kept.
func (c idle[T]) put(x T) {
	select {
	case c <- x:
	default:
	}
}

var (
	sharedZstd = newZstdCodec(zstd.SpeedFastest)
	strongZstd = newZstdCodec(zstd.SpeedBetterCompression)
)

func newZstdCodec(level zstd.EncoderLevel) *zstdCodec {
	return &zstdCodec{level: level, enc: make(idle[*zstd.Encoder], idleCoders), dec: make(idle[*zstd.Decoder], idleCoders)}
}

func (c *zstdCodec) String() string                            { return "ZSTD" }
func (c *zstdCodec) CompressionCodec() format.CompressionCodec { return format.Zstd }

func (c *zstdCodec) Encode(dst, src []byte) ([]byte, error) {
	e, err := c.enc.get(func() (*zstd.Encoder, error) {
		return zstd.NewWriter(nil, zstd.WithEncoderLevel(c.level), zstd.WithEncoderConcurrency(1),
			zstd.WithWindowSize(1<<20), zstd.WithZeroFrames(true), zstd.WithEncoderCRC(false))
	})
	if err != nil {
		return nil, err
	}
	defer c.enc.put(e)
	return e.EncodeAll(src, dst[:0]), nil
}

func (c *zstdCodec) Decode(dst, src []byte) ([]byte, error) {
	d, err := c.dec.get(func() (*zstd.Decoder, error) { return zstd.NewReader(nil, zstd.WithDecoderConcurrency(1)) })
	if err != nil {
		return nil, err
	}
	defer c.dec.put(d)
	return d.DecodeAll(src, dst[:0])
}
