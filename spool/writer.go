package spool

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dustin/go-humanize"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sys/unix"

	"github.com/sgload/sgload/internal/durable"
)

// Errors that Append returns; callers answer 503 to all of them, since a
// retry later can succeed.
var (
	ErrClosed   = errors.New("spool is closed")
	ErrDiskFull = errors.New("free disk space is below the floor")
)

// Reasons Ready gives besides those (its errors wrap one of the four).
var (
	ErrNotWritable = errors.New("spool folder is not writable")
	ErrWriteFailed = errors.New("a spool write failed recently")
)

// Options configure a Writer. Zero values take the defaults.
type Options struct {
	// Node is this instance's id; empty means the id stored in the spool, or
	// one derived from the host name on first use.
	Node string
	// SegmentBytes seals the open segment once it is this large (64 MiB).
	SegmentBytes int64
	// SegmentAge seals the open segment once it is this old (60 s), so flush
	// sees recent events without waiting for a full segment.
	SegmentAge time.Duration
	// MinFreeBytes refuses appends while the file system has less free space
	// (default 1 GiB; negative disables the check).
	MinFreeBytes int64
	// MaxBatchBytes caps one group commit (16 MiB).
	MaxBatchBytes int
	Logger        *slog.Logger
	Registerer    prometheus.Registerer
	// Now is the clock (tests).
	Now func() time.Time

	// beforeSync, when set, runs in the writer before each group commit's
	// write: tests use it to hold the writer while requests queue up.
	beforeSync func()
}

func (o *Options) defaults() {
	if o.SegmentBytes <= 0 {
		o.SegmentBytes = 64 << 20
	}
	if o.SegmentAge <= 0 {
		o.SegmentAge = time.Minute
	}
	if o.MinFreeBytes == 0 {
		o.MinFreeBytes = 1 << 30
	}
	if o.MaxBatchBytes <= 0 {
		o.MaxBatchBytes = 16 << 20
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
}

// Writer is the writing side of a spool: serve appends records to it. One
// writer per spool (it holds the serve lock).
type Writer struct {
	dir        Dir
	opts       Options
	node       string
	quotedNode []byte
	log        *slog.Logger
	m          *metrics
	lock       *Lock

	reqs      chan *appendReq
	quit      chan struct{}
	done      chan struct{}
	closeOnce sync.Once
	closeErr  error

	seq *Sequencer

	// Owned by the writer goroutine.
	f       *os.File
	segPath string
	size    int64
	buf     []byte

	openedAt  atomic.Int64            // unix nanos of the open segment's creation; 0 = none
	writeFail atomic.Pointer[failure] // last group commit's error; nil after a success
	free      freeCache
}

type failure struct {
	err error
	at  time.Time
}

type appendReq struct {
	p    *Prepared
	ack  Ack
	done chan error
}

// Ack tells where an appended record went.
type Ack struct {
	// FirstSeq is the _sequence of the record's first event.
	FirstSeq int64
	// Segment is the file name the record was written to.
	Segment string
}

// OpenWriter prepares the spool at root for appending: it creates its
// folders, takes the serve lock (one writer per spool), recovers segments
// left open by a crash, and starts the writer.
func OpenWriter(root string, opts Options) (*Writer, error) {
	opts.defaults()
	d, err := Create(root)
	if err != nil {
		return nil, err
	}
	lock, err := d.Lock(LockServe)
	if err != nil {
		return nil, fmt.Errorf("open spool %s: %w", root, err)
	}
	s := &Writer{
		dir:  d,
		opts: opts,
		log:  opts.Logger,
		lock: lock,
		reqs: make(chan *appendReq),
		quit: make(chan struct{}),
		done: make(chan struct{}),
	}
	if err := s.start(); err != nil {
		_ = lock.Unlock()
		return nil, err
	}
	s.m = newMetrics(opts.Registerer, s)
	go s.run()
	return s, nil
}

func (s *Writer) start() error {
	node, err := s.dir.saveNode(s.opts.Node)
	if err != nil {
		return err
	}
	s.node = node
	s.quotedNode, _ = json.Marshal(node)
	for _, d := range []string{s.dir.Events(), s.dir.Quarantine(), s.dir.State()} {
		removed, err := durable.Sweep(d)
		if err != nil {
			return err
		}
		for _, p := range removed {
			s.log.Info("removed unfinished temporary file", "path", p)
		}
	}
	if s.seq, err = OpenSequencer(s.dir.SequenceFile(), s.opts.Now); err != nil {
		return err
	}
	return s.recoverOpen()
}

// Node is the node id records are written under.
func (s *Writer) Node() string { return s.node }

// Dir is the spool the writer appends to.
func (s *Writer) Dir() Dir { return s.dir }

// Append writes p and returns once it is durable. Concurrent calls share one
// fsync. It fails with ErrDiskFull, ErrClosed, the context's error, or a
// write error; in every case the caller must not acknowledge the data.
//
// The context is honoured only while waiting for the writer: once the writer
// has taken p, Append waits for the fsync (milliseconds), because p's body
// belongs to the caller's buffer and must not be reused while it is copied.
func (s *Writer) Append(ctx context.Context, p *Prepared) (Ack, error) {
	if err := s.Accepting(); err != nil {
		return Ack{}, err
	}
	r := &appendReq{p: p, done: make(chan error, 1)}
	select {
	case s.reqs <- r:
	case <-s.quit:
		return Ack{}, ErrClosed
	case <-ctx.Done():
		return Ack{}, ctx.Err()
	}
	err := <-r.done
	return r.ack, err
}

// Ready reports why the spool should not be sent traffic now, or nil:
// closed, free space under the floor, the folder not writable, or a write
// that failed in the last 30 seconds with no success since.
func (s *Writer) Ready() error {
	if err := s.Accepting(); err != nil {
		return err
	}
	if err := unix.Access(s.dir.Events(), unix.W_OK); err != nil {
		return fmt.Errorf("%w: %s: %w", ErrNotWritable, s.dir.Events(), err)
	}
	if f := s.writeFail.Load(); f != nil && time.Since(f.at) < 30*time.Second {
		return fmt.Errorf("%w: %w", ErrWriteFailed, f.err)
	}
	return nil
}

// Accepting is the cheap check made before each append: the spool is open
// and free space is above the floor.
func (s *Writer) Accepting() error {
	select {
	case <-s.quit:
		return ErrClosed
	default:
	}
	if s.opts.MinFreeBytes > 0 {
		free, err := s.freeBytes()
		if err != nil {
			return fmt.Errorf("statfs %s: %w", s.dir.Root, err)
		}
		if free < uint64(s.opts.MinFreeBytes) {
			return fmt.Errorf("%w: %s free on %s, floor %s (--min-free-bytes)", ErrDiskFull,
				humanize.IBytes(free), s.dir.Root, humanize.IBytes(uint64(s.opts.MinFreeBytes)))
		}
	}
	return nil
}

// Close stops taking appends, writes what is queued, and seals the open
// segment. It is safe to call more than once.
func (s *Writer) Close() error {
	s.closeOnce.Do(func() {
		close(s.quit)
		<-s.done
		s.closeErr = s.lock.Unlock()
	})
	return s.closeErr
}

func (s *Writer) run() {
	defer close(s.done)
	tick := time.NewTicker(min(s.opts.SegmentAge/4, time.Second))
	defer tick.Stop()
	var batch []*appendReq
	for {
		var size int
		select {
		case r := <-s.reqs:
			batch, size = append(batch, r), r.p.Size()
		case <-tick.C:
			s.sealIfOld()
			continue
		case <-s.quit:
			if err := s.seal(); err != nil {
				s.log.Error("seal at shutdown", "err", err)
			}
			return
		}
		// Everything that queued up during the last fsync goes into this one.
	drain:
		for size < s.opts.MaxBatchBytes {
			select {
			case r := <-s.reqs:
				batch, size = append(batch, r), size+r.p.Size()
			default:
				break drain
			}
		}
		s.commit(batch)
		clear(batch)
		batch = batch[:0]
	}
}

func (s *Writer) commit(batch []*appendReq) {
	now := s.opts.Now()
	s.buf = s.buf[:0]
	for _, r := range batch {
		seq := s.seq.Reserve(r.p.Events)
		r.ack.FirstSeq = seq
		s.buf = appendRecord(s.buf, seq, now, s.quotedNode, r.p)
	}
	err := s.write(batch[0].ack.FirstSeq)
	if err != nil {
		s.writeFail.Store(&failure{err: err, at: time.Now()})
		s.m.writeErrors.Inc()
		s.log.Error("spool write failed; requests refused with 503", "segment", s.segPath, "err", err)
	} else {
		s.writeFail.Store(nil)
		s.m.records.Add(float64(len(batch)))
		s.m.bytes.Add(float64(len(s.buf)))
		s.m.batch.Observe(float64(len(batch)))
	}
	name := filepath.Base(s.segPath)
	for _, r := range batch {
		r.ack.Segment = name
		r.done <- err
	}
	if err == nil && s.size >= s.opts.SegmentBytes {
		if err := s.seal(); err != nil {
			s.log.Error("seal segment", "err", err)
		}
	}
	if cap(s.buf) > 4*s.opts.MaxBatchBytes {
		s.buf = nil // one huge batch should not pin its buffer forever
	}
}

// write appends s.buf to the open segment (opening one named after firstSeq
// if needed) and fsyncs it. On failure the segment is cut back to its last
// durable length so no half-written record sits before later ones.
func (s *Writer) write(firstSeq int64) error {
	if s.f == nil {
		if err := s.openSegment(firstSeq); err != nil {
			return err
		}
	}
	if s.opts.beforeSync != nil {
		s.opts.beforeSync()
	}
	start := time.Now()
	_, err := s.f.Write(s.buf)
	if err == nil {
		err = datasync(s.f)
	}
	s.m.fsync.Observe(time.Since(start).Seconds())
	if err == nil {
		s.size += int64(len(s.buf))
		return nil
	}
	err = fmt.Errorf("append to %s: %w", s.segPath, err)
	if terr := s.f.Truncate(s.size); terr != nil || datasync(s.f) != nil {
		// The tail is unknown: seal the file as it is (readers skip a damaged
		// tail line, and nothing acknowledged follows it) and start afresh.
		s.log.Error("cannot cut back failed write; sealing segment", "segment", s.segPath, "err", terr)
		if serr := s.seal(); serr != nil {
			s.log.Error("seal after failed write", "err", serr)
		}
	}
	return err
}

func (s *Writer) openSegment(firstSeq int64) error {
	p := filepath.Join(s.dir.Events(), SegmentName(s.node, firstSeq, OpenSuffix))
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("create segment: %w", err)
	}
	// The new name must be durable before any record in it is acknowledged.
	if err := durable.SyncDir(s.dir.Events()); err != nil {
		_ = f.Close()
		_ = os.Remove(p)
		return err
	}
	s.f, s.segPath, s.size = f, p, 0
	s.openedAt.Store(s.opts.Now().UnixNano())
	return nil
}

func (s *Writer) sealIfOld() {
	at := s.openedAt.Load()
	if s.f == nil || at == 0 || s.opts.Now().Sub(time.Unix(0, at)) < s.opts.SegmentAge {
		return
	}
	if err := s.seal(); err != nil {
		s.log.Error("seal segment", "err", err)
	}
}

// seal closes the open segment and renames it to .ndjson, which hands it to
// flush. The sequence high-water mark is saved first so that sequences stay
// increasing across restarts even after done/ is pruned.
func (s *Writer) seal() error {
	if s.f == nil {
		return nil
	}
	f, p := s.f, s.segPath
	s.f, s.segPath = nil, ""
	s.openedAt.Store(0)
	cerr := f.Close()
	if err := s.seq.Save(); err != nil {
		return err
	}
	sealed := strings.TrimSuffix(p, OpenSuffix) + SealedSuffix
	if err := durable.Rename(p, sealed); err != nil {
		return fmt.Errorf("seal %s: %w", p, err)
	}
	s.m.sealed.Inc()
	s.log.Debug("sealed segment", "segment", filepath.Base(sealed), "bytes", s.size)
	if cerr != nil {
		return fmt.Errorf("close %s: %w", p, cerr)
	}
	return nil
}

func (s *Writer) openAge() float64 {
	at := s.openedAt.Load()
	if at == 0 {
		return 0
	}
	return s.opts.Now().Sub(time.Unix(0, at)).Seconds()
}

// QuarantineCount is the number of files in quarantine/.
func (s *Writer) QuarantineCount() int {
	entries, _ := os.ReadDir(s.dir.Quarantine())
	return len(entries)
}

type freeCache struct {
	mu   sync.Mutex
	at   time.Time
	free uint64
	err  error
}

// freeBytes is statfs's available space, cached for a second: requests
// arrive by the hundred per second and the answer changes slowly.
func (s *Writer) freeBytes() (uint64, error) {
	c := &s.free
	c.mu.Lock()
	defer c.mu.Unlock()
	if now := time.Now(); now.Sub(c.at) > time.Second {
		var st unix.Statfs_t
		c.err = unix.Statfs(s.dir.Root, &st)
		c.free, c.at = st.Bavail*uint64(st.Bsize), now
	}
	return c.free, c.err
}
