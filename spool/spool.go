package spool

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

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

// Options configure a Spool. Zero values take the defaults.
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

// Spool is the writer side of a spool: serve appends records to it.
type Spool struct {
	layout     Layout
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

	// Owned by the writer goroutine.
	f       *os.File
	segPath string
	size    int64
	lastSeq int64
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

// Open prepares the spool at root for appending: it creates the layout,
// takes the writer lock (one serve per spool), recovers segments left open by
// a crash, and starts the writer.
func Open(root string, opts Options) (*Spool, error) {
	opts.defaults()
	l := Layout{Root: root}
	if err := l.Create(); err != nil {
		return nil, err
	}
	lock, err := TryLock(l, "serve")
	if err != nil {
		return nil, fmt.Errorf("open spool %s: %w", root, err)
	}
	s := &Spool{
		layout: l,
		opts:   opts,
		log:    opts.Logger,
		lock:   lock,
		reqs:   make(chan *appendReq),
		quit:   make(chan struct{}),
		done:   make(chan struct{}),
	}
	if err := s.start(); err != nil {
		lock.Unlock()
		return nil, err
	}
	s.m = newMetrics(opts.Registerer, s)
	go s.run()
	return s, nil
}

func (s *Spool) start() error {
	node, err := resolveNode(s.layout, s.opts.Node)
	if err != nil {
		return err
	}
	s.node = node
	s.quotedNode, _ = json.Marshal(node)
	for _, d := range []string{s.layout.Events(), s.layout.Quarantine(), s.layout.State()} {
		removed, err := durable.Sweep(d)
		if err != nil {
			return err
		}
		for _, p := range removed {
			s.log.Info("removed unfinished temporary file", "path", p)
		}
	}
	hwm, err := readHighWater(s.layout)
	if err != nil {
		return err
	}
	last, err := s.recoverOpen(hwm)
	if err != nil {
		return err
	}
	s.lastSeq = max(hwm, last)
	return nil
}

// Node is the node id records are written under.
func (s *Spool) Node() string { return s.node }

// Layout is where the spool lives.
func (s *Spool) Layout() Layout { return s.layout }

// Append writes p and returns once it is durable. Concurrent calls share one
// fsync. It fails with ErrDiskFull, ErrClosed, the context's error, or a
// write error; in every case the caller must not acknowledge the data.
//
// The context is honoured only while waiting for the writer: once the writer
// has taken p, Append waits for the fsync (milliseconds), because p's body
// belongs to the caller's buffer and must not be reused while it is copied.
func (s *Spool) Append(ctx context.Context, p *Prepared) (Ack, error) {
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
func (s *Spool) Ready() error {
	if err := s.Accepting(); err != nil {
		return err
	}
	if err := unix.Access(s.layout.Events(), unix.W_OK); err != nil {
		return fmt.Errorf("spool %s is not writable: %w", s.layout.Events(), err)
	}
	if f := s.writeFail.Load(); f != nil && time.Since(f.at) < 30*time.Second {
		return fmt.Errorf("last spool write failed: %w", f.err)
	}
	return nil
}

// Accepting is the cheap check made before each append: the spool is open
// and free space is above the floor.
func (s *Spool) Accepting() error {
	select {
	case <-s.quit:
		return ErrClosed
	default:
	}
	if s.opts.MinFreeBytes > 0 {
		free, err := s.freeBytes()
		if err != nil {
			return fmt.Errorf("statfs %s: %w", s.layout.Root, err)
		}
		if free < uint64(s.opts.MinFreeBytes) {
			return fmt.Errorf("%w: %d bytes free on %s, floor %d", ErrDiskFull, free, s.layout.Root, s.opts.MinFreeBytes)
		}
	}
	return nil
}

// Close stops taking appends, writes what is queued, and seals the open
// segment. It is safe to call more than once.
func (s *Spool) Close() error {
	s.closeOnce.Do(func() {
		close(s.quit)
		<-s.done
		s.closeErr = s.lock.Unlock()
	})
	return s.closeErr
}

func (s *Spool) run() {
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

func (s *Spool) nextSeq(n int) int64 {
	seq := s.opts.Now().UnixMicro()
	if seq <= s.lastSeq {
		seq = s.lastSeq + 1
	}
	s.lastSeq = seq + int64(max(n, 1)) - 1
	return seq
}

func (s *Spool) commit(batch []*appendReq) {
	now := s.opts.Now()
	s.buf = s.buf[:0]
	for _, r := range batch {
		seq := s.nextSeq(r.p.Events)
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
func (s *Spool) write(firstSeq int64) error {
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

func (s *Spool) openSegment(firstSeq int64) error {
	p := filepath.Join(s.layout.Events(), SegmentName(s.node, firstSeq, OpenSuffix))
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("create segment: %w", err)
	}
	// The new name must be durable before any record in it is acknowledged.
	if err := durable.SyncDir(s.layout.Events()); err != nil {
		f.Close()
		os.Remove(p)
		return err
	}
	s.f, s.segPath, s.size = f, p, 0
	s.openedAt.Store(s.opts.Now().UnixNano())
	return nil
}

func (s *Spool) sealIfOld() {
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
func (s *Spool) seal() error {
	if s.f == nil {
		return nil
	}
	f, p := s.f, s.segPath
	s.f, s.segPath = nil, ""
	s.openedAt.Store(0)
	cerr := f.Close()
	if err := writeHighWater(s.layout, s.lastSeq); err != nil {
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

func (s *Spool) openAge() float64 {
	at := s.openedAt.Load()
	if at == 0 {
		return 0
	}
	return s.opts.Now().Sub(time.Unix(0, at)).Seconds()
}

// Backlog is what waits in events/ for flush.
type Backlog struct {
	Segments int
	Bytes    int64
}

// Backlog sums the sealed event segments.
func (s *Spool) Backlog() Backlog {
	segs, _ := ListSegments(s.layout.Events(), SealedSuffix)
	var b Backlog
	for _, sg := range segs {
		b.Segments++
		b.Bytes += sg.Size
	}
	return b
}

// QuarantineCount is the number of files in quarantine/.
func (s *Spool) QuarantineCount() int {
	entries, _ := os.ReadDir(s.layout.Quarantine())
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
func (s *Spool) freeBytes() (uint64, error) {
	c := &s.free
	c.mu.Lock()
	defer c.mu.Unlock()
	if now := time.Now(); now.Sub(c.at) > time.Second {
		var st unix.Statfs_t
		c.err = unix.Statfs(s.layout.Root, &st)
		c.free, c.at = st.Bavail*uint64(st.Bsize), now
	}
	return c.free, c.err
}

func resolveNode(l Layout, want string) (string, error) {
	node, err := NodeID(l, want)
	if err != nil {
		return "", err
	}
	if old, err := os.ReadFile(nodePath(l)); err == nil && strings.TrimSpace(string(old)) == node {
		return node, nil
	}
	return node, durable.WriteFile(nodePath(l), []byte(node+"\n"), 0o644)
}

func nodePath(l Layout) string { return filepath.Join(l.State(), "node") }

// NodeID is the node id of the spool at l: want when given, else the one
// serve stored in state/node, else one made from the host name (what serve
// will store). Flush and sync name their output with it; only serve stores it.
func NodeID(l Layout, want string) (string, error) {
	if want != "" {
		if !ValidNode(want) {
			return "", fmt.Errorf("node id %q: use 1-63 of a-z 0-9 . _ - (starting with a letter or digit)", want)
		}
		return want, nil
	}
	b, err := os.ReadFile(nodePath(l))
	if err == nil {
		node := strings.TrimSpace(string(b))
		if !ValidNode(node) {
			return "", fmt.Errorf("node id %q in %s is not valid", node, nodePath(l))
		}
		return node, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("read node id: %w", err)
	}
	return nodeFromHost(), nil
}

func nodeFromHost() string {
	h, _ := os.Hostname()
	h = strings.ToLower(h)
	if i := strings.IndexByte(h, '.'); i > 0 {
		h = h[:i]
	}
	var b strings.Builder
	for _, c := range h {
		if (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_' {
			b.WriteRune(c)
		}
	}
	node := strings.TrimLeft(b.String(), "-_")
	if len(node) > 63 {
		node = node[:63]
	}
	if !ValidNode(node) {
		node = "node"
	}
	return node
}

func highWaterPath(l Layout) string { return filepath.Join(l.State(), "sequence") }

func readHighWater(l Layout) (int64, error) {
	b, err := os.ReadFile(highWaterPath(l))
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("read sequence high-water mark: %w", err)
	}
	n, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("parse %s: %w", highWaterPath(l), err)
	}
	return n, nil
}

func writeHighWater(l Layout, seq int64) error {
	return durable.WriteFile(highWaterPath(l), []byte(strconv.FormatInt(seq, 10)+"\n"), 0o644)
}
