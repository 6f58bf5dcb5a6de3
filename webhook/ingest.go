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
// it was charged for.
type body struct {
	h       *Handler
	authed  bool
	data    []byte   // the body (in memory)
	buf     *[]byte  // data's pooled buffer
	file    *os.File // the body, spilled (unlinked: it vanishes with the process)
	n       int64    // bytes received
	charged int64    // bytes reserved for it: n plus what the next reads may bring
	mem     int64    // charged to h.mem
	unauth  int64    // charged to h.unauth
	sum     hash.Hash
}

// spillChunk is how much a spilled body reads at once.
const spillChunk = 32 << 10

var chunkPool = sync.Pool{New: func() any { b := make([]byte, spillChunk); return &b }}

// readBody reads r's body within the budgets and the rate. authed says
// whether the sender has passed a secret already; sum, when set, hashes
// the body as it arrives (for the signature).
func (h *Handler) readBody(w http.ResponseWriter, r *http.Request, authed bool, sum hash.Hash) (*body, error) {
	b := &body{h: h, authed: authed, sum: sum}
	limit := h.cfg.MaxBodyBytes
	rc := http.NewResponseController(w)
	defer func() { _ = rc.SetReadDeadline(time.Time{}) }()
	start := time.Now()
	src := http.MaxBytesReader(w, r.Body, limit)
	if !authed && r.ContentLength > h.cfg.SpillBytes {
		if err := b.spill(); err != nil {
			b.release()
			return nil, err
		}
	}
	for {
		// The deadline for the next bytes: the grace period, then the
		// minimum rate, and never past the body timeout.
		dl := start.Add(h.cfg.BodyTimeout)
		if h.cfg.MinBodyRate > 0 {
			if byRate := start.Add(h.cfg.BodyGrace + time.Duration(float64(b.n)/float64(h.cfg.MinBodyRate)*float64(time.Second))); byRate.Before(dl) {
				dl = byRate
			}
		}
		_ = rc.SetReadDeadline(dl) // not every connection supports it; the server's ReadTimeout still holds
		if b.n == r.ContentLength {
			return b, nil // all there is (net/http allows no more)
		}
		if b.n >= b.charged {
			if err := b.reserve(limit, r.ContentLength); err != nil {
				b.release()
				return nil, err
			}
		}
		window := b.charged - b.n
		var n int
		var err error
		if b.file != nil {
			cp := chunkPool.Get().(*[]byte)
			p := (*cp)[:min(int64(len(*cp)), window)]
			if n, err = src.Read(p); n > 0 {
				if _, werr := b.file.Write(p[:n]); werr != nil && err == nil {
					err = fmt.Errorf("spill body: %w", werr)
				}
				b.hash(p[:n])
			}
			chunkPool.Put(cp)
		} else {
			p := b.data[len(b.data) : int64(len(b.data))+window]
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

// reserve charges room for the next reads: doubling from 4 KiB in memory
// (up to the announced length, when there is one), so memory follows the
// bytes that arrived and not the length the sender claims; a chunk at a
// time on disk. An unauthenticated body that grows past SpillBytes, or
// finds no memory, goes to disk.
func (b *body) reserve(limit, length int64) error {
	h := b.h
	if length >= 0 {
		limit = min(limit, length)
	}
	if b.file == nil {
		want := min(max(b.n, 4<<10), limit+1-b.n)
		if length >= 0 {
			want = min(want, length-b.n)
		}
		if !b.authed {
			want = min(want, h.cfg.SpillBytes-b.n)
		}
		if want > 0 {
			err := b.charge(want, false)
			var eb *errBudget
			if err == nil {
				b.room(int(want))
				return nil
			}
			if b.authed || !errors.As(err, &eb) || eb.reason != refusedMemory {
				return err
			}
			// No memory for a body that may be a forgery: it waits on
			// disk instead, within its own budget.
		}
		if err := b.spill(); err != nil {
			return err
		}
	}
	return b.charge(min(spillChunk, limit+1-b.n), true)
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
	b.charged += n
	return nil
}

// room makes sure b.data has n bytes of spare capacity.
func (b *body) room(n int) {
	if b.buf == nil {
		if p, ok := b.h.bufs.Get().(*[]byte); ok {
			b.buf = p
		} else {
			b.buf = new([]byte)
		}
		b.data = (*b.buf)[:0]
	}
	if cap(b.data)-len(b.data) < n {
		grown := make([]byte, len(b.data), len(b.data)+n)
		copy(grown, b.data)
		b.data = grown
	}
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
	b.charged = b.n // the memory reserved beyond n is given back
	b.h.unauth.give(b.unauth - b.n)
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
	if b.buf != nil {
		if cap(b.data) <= int(2*b.h.cfg.SpillBytes) {
			*b.buf = b.data[:0]
			b.h.bufs.Put(b.buf)
		}
		b.buf = nil
	}
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
