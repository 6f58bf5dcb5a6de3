package webhook

// Bounded, fair ingest. A request is "unauthenticated" until it has passed
// a check that needs a secret (URL token, OAuth bearer) or, when the
// signature is the only method, until its signature verifies, which needs
// the whole body. What such requests may cost is bounded:
//
//   - bytes: each body is charged, as it arrives, to the memory budget
//     (MaxBodyMemory, every body in memory) and, while its sender is not
//     authenticated, to the unauthenticated budget (MaxUnauthenticatedBytes,
//     memory and disk). A body larger than SpillBytes (SendGrid's are not)
//     waits for its signature check in an unlinked file under the spool,
//     not in memory, and large bodies together may take only three quarters
//     of the unauthenticated budget, so bodies of SendGrid's size always
//     find room. Past a budget: 503 with Retry-After, which SendGrid retries.
//   - time: after BodyGrace, a body must keep arriving at MinBodyRate, and
//     all of it within BodyTimeout; a sender that dawdles gets 408 and its
//     connection closed. A real SendGrid POST (at most ~768 KB, from a data
//     centre) is done in well under a second.
//   - slots: MaxInFlight counts authenticated requests only, so
//     unauthenticated ones can never take the places of real ones.

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"
	"math/bits"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// budget is a byte budget that requests draw on without waiting: a draw
// that does not fit is refused.
type budget struct {
	limit int64
	used  atomic.Int64
}

// take draws n bytes if used stays within ceiling (at most the limit).
func (b *budget) take(n, ceiling int64) bool {
	ceiling = min(ceiling, b.limit)
	for {
		u := b.used.Load()
		if u+n > ceiling {
			return false
		}
		if b.used.CompareAndSwap(u, u+n) {
			return true
		}
	}
}

func (b *budget) give(n int64) {
	if n != 0 {
		b.used.Add(-n)
	}
}

// Reasons a request is refused for lack of capacity (the metric's label).
const (
	refusedMemory   = "memory"          // the memory budget is spent
	refusedUnauth   = "unauthenticated" // the unauthenticated budget is spent
	refusedInFlight = "in_flight"       // MaxInFlight authenticated requests at once
	refusedSlow     = "slow_body"       // the body did not arrive in time
	refusedNetwork  = "network"         // the sender is outside AllowNetworks
)

// errBudget is a refusal for lack of capacity; reason is the metric label.
type errBudget struct{ reason string }

func (e *errBudget) Error() string {
	switch e.reason {
	case refusedMemory:
		return "request bodies in memory are at their limit"
	case refusedUnauth:
		return "bytes held for senders not yet authenticated are at their limit"
	}
	return e.reason
}

// errSlow: the body did not arrive at the minimum rate.
var errSlow = errors.New("request body arrived too slowly")

// body is one request body, held in memory or in a spill file, with what
// it was charged for. In memory, the charge is the buffer's capacity: the
// memory it really holds.
type body struct {
	h      *Handler
	authed bool
	data   []byte   // the body (in memory)
	file   *os.File // the body, spilled (unlinked: it vanishes with the process)
	n      int64    // bytes received
	mem    int64    // charged to h.mem: cap(data)
	unauth int64    // charged to h.unauth: cap(data) in memory, what was read or is about to be on disk
	sum    hash.Hash
}

// Body buffers are powers of two from 4 KiB, pooled by size from 64 KiB, so
// a buffer's capacity is what it was charged for and no request holds a
// buffer larger than its charge (a sender that trickles holds 4 KiB).
const (
	minBuf      = 4 << 10
	minPooled   = 16 // log2 of the smallest pooled size, 64 KiB
	pooledSizes = 8  // 64 KiB .. 8 MiB
	spillChunk  = 32 << 10
)

var (
	bufPools  [pooledSizes]sync.Pool
	chunkPool = sync.Pool{New: func() any { b := make([]byte, spillChunk); return &b }}
)

func ceilPow2(n int64) int64 {
	if n <= 1 {
		return 1
	}
	return 1 << bits.Len64(uint64(n-1))
}

func poolIndex(c int) int {
	if c < 1<<minPooled || c&(c-1) != 0 {
		return -1
	}
	i := bits.Len(uint(c)) - 1 - minPooled
	if i >= pooledSizes {
		return -1
	}
	return i
}

func getBuf(c int) []byte {
	if i := poolIndex(c); i >= 0 {
		if p, ok := bufPools[i].Get().(*[]byte); ok {
			return (*p)[:0]
		}
	}
	return make([]byte, 0, c)
}

func putBuf(b []byte) {
	if i := poolIndex(cap(b)); i >= 0 {
		b = b[:0]
		bufPools[i].Put(&b)
	}
}

// readBody reads r's body within the budgets and the rate. authed says
// whether the sender has passed a secret already; sum, when set, hashes
// the body as it arrives (for the signature).
func (h *Handler) readBody(w http.ResponseWriter, r *http.Request, authed bool, sum hash.Hash) (*body, error) {
	b := &body{h: h, authed: authed, sum: sum}
	limit := h.cfg.MaxBodyBytes
	if r.ContentLength >= 0 {
		limit = min(limit, r.ContentLength)
	}
	rc := http.NewResponseController(w)
	defer func() { _ = rc.SetReadDeadline(time.Time{}) }()
	start := time.Now()
	src := http.MaxBytesReader(w, r.Body, h.cfg.MaxBodyBytes)
	if !authed && r.ContentLength > h.cfg.SpillBytes {
		if err := b.spill(); err != nil {
			b.release()
			return nil, err
		}
	}
	for {
		if b.n == r.ContentLength {
			return b, nil // all there is (net/http allows no more)
		}
		// The deadline for the next bytes: the grace period, then the
		// minimum rate, and never past the body timeout.
		dl := start.Add(h.cfg.BodyTimeout)
		if h.cfg.MinBodyRate > 0 {
			if byRate := start.Add(h.cfg.BodyGrace + time.Duration(float64(b.n)/float64(h.cfg.MinBodyRate)*float64(time.Second))); byRate.Before(dl) {
				dl = byRate
			}
		}
		_ = rc.SetReadDeadline(dl) // not every connection supports it; the server's ReadTimeout still holds
		window, err := b.room(limit)
		if err != nil {
			b.release()
			return nil, err
		}
		var n int
		if b.file != nil {
			cp := chunkPool.Get().(*[]byte)
			p := (*cp)[:window]
			if n, err = src.Read(p); n > 0 {
				if _, werr := b.file.Write(p[:n]); werr != nil && err == nil {
					err = fmt.Errorf("spill body: %w", werr)
				}
				b.hash(p[:n])
			}
			chunkPool.Put(cp)
		} else {
			p := b.data[len(b.data) : len(b.data)+window]
			if n, err = src.Read(p); n > 0 {
				b.hash(p[:n])
				b.data = b.data[:len(b.data)+n]
			}
		}
		b.n += int64(n)
		if err == io.EOF {
			return b, nil
		}
		if err != nil {
			b.release()
			if errors.Is(err, os.ErrDeadlineExceeded) {
				return nil, errSlow
			}
			return nil, err
		}
	}
}

// room makes room for the next read and says how large it may be. In
// memory the buffer doubles from 4 KiB, so memory follows the bytes that
// arrived and not the length a sender claims; on disk the reservation
// grows a chunk at a time. An unauthenticated body that would grow past
// SpillBytes, or finds no memory, goes to disk.
func (b *body) room(limit int64) (int, error) {
	h := b.h
	left := limit + 1 - b.n // one more than allowed, to see the limit crossed
	if b.file == nil {
		if spare := int64(cap(b.data) - len(b.data)); spare > 0 {
			return int(min(spare, left)), nil
		}
		// The next power of two that could hold what may still come,
		// doubling at most: a body never holds more than twice what
		// arrived (or 64 KiB), and its buffers come from the pools.
		grown := max(minBuf, min(2*int64(cap(b.data)), ceilPow2(limit+1)))
		if !b.authed && grown > h.cfg.SpillBytes {
			if err := b.spill(); err != nil {
				return 0, err
			}
			return b.room(limit)
		}
		err := b.charge(grown-int64(cap(b.data)), false)
		var eb *errBudget
		switch {
		case err == nil:
			nb := getBuf(int(grown))
			nb = append(nb, b.data...)
			putBuf(b.data)
			b.data = nb
			return int(min(int64(cap(b.data)-len(b.data)), left)), nil
		case b.authed || !errors.As(err, &eb) || eb.reason != refusedMemory:
			return 0, err
		}
		// No memory for a body that may be a forgery: it waits on disk
		// instead, within its own budget.
		if err := b.spill(); err != nil {
			return 0, err
		}
	}
	if b.unauth <= b.n {
		if err := b.charge(min(spillChunk, left), true); err != nil {
			return 0, err
		}
	}
	return int(min(b.unauth-b.n, spillChunk, left)), nil
}

// charge draws n more bytes: from the memory budget for a body in memory,
// from the unauthenticated budget (with the lower ceiling for large,
// spilled bodies) while the sender is not authenticated.
func (b *body) charge(n int64, spilled bool) error {
	h := b.h
	if !b.authed {
		ceiling := h.unauth.limit
		if spilled {
			ceiling -= h.unauth.limit / 4 // kept for bodies of SendGrid's size
		}
		if !h.unauth.take(n, ceiling) {
			return &errBudget{refusedUnauth}
		}
		b.unauth += n
	}
	if !spilled {
		if !h.mem.take(n, h.mem.limit) {
			if !b.authed {
				h.unauth.give(n)
				b.unauth -= n
			}
			return &errBudget{refusedMemory}
		}
		b.mem += n
	}
	return nil
}

// spill moves the body to an unlinked file in the spill folder and gives
// its memory back.
func (b *body) spill() error {
	f, err := os.CreateTemp(b.h.cfg.SpillDir, "body-*.tmp")
	if err != nil {
		return fmt.Errorf("spill body: %w", err)
	}
	_ = os.Remove(f.Name()) // the open file lives on; a crash leaves nothing
	if _, err := f.Write(b.data); err != nil {
		_ = f.Close()
		return fmt.Errorf("spill body: %w", err)
	}
	b.file = f
	b.freeMemory()
	b.h.unauth.give(b.unauth - b.n) // on disk, only what was read
	b.unauth = b.n
	b.h.m.spilled.Inc()
	return nil
}

func (b *body) hash(p []byte) {
	if b.sum != nil {
		b.sum.Write(p)
	}
}

// authenticated moves the body out of the unauthenticated budget and, when
// it was spilled, back into memory (charged to the memory budget).
func (b *body) authenticated() error {
	b.authed = true
	b.h.unauth.give(b.unauth)
	b.unauth = 0
	if b.file == nil {
		return nil
	}
	f := b.file
	b.file = nil
	defer f.Close()
	if !b.h.mem.take(b.n, b.h.mem.limit) {
		return &errBudget{refusedMemory}
	}
	b.mem = b.n
	b.data = make([]byte, b.n)
	if _, err := f.ReadAt(b.data, 0); err != nil {
		return fmt.Errorf("read spilled body back: %w", err)
	}
	return nil
}

// freeMemory gives the body's memory back.
func (b *body) freeMemory() {
	b.h.mem.give(b.mem)
	b.mem = 0
	putBuf(b.data)
	b.data = nil
}

// release gives back everything the body holds.
func (b *body) release() {
	if b == nil {
		return
	}
	b.freeMemory()
	b.h.unauth.give(b.unauth)
	b.unauth = 0
	if b.file != nil {
		_ = b.file.Close()
		b.file = nil
	}
}

// signatureHash starts the digest SendGrid signs: the timestamp header,
// then the body.
func signatureHash(ts string) hash.Hash {
	h := sha256.New()
	h.Write([]byte(ts))
	return h
}
