// Package watchdog ends a request to a peer that stops making progress: a
// fixed timeout would have to be long enough for the largest upload, and
// then a server that froze at the first byte would hold a flush (and its
// lock) for just as long. A watchdog is kicked by every bit of progress and
// cancels its context only after a quiet spell.
package watchdog

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync/atomic"
	"time"
)

// ErrStalled is the cause of a context a watchdog cancelled.
var ErrStalled = errors.New("no progress")

// Watchdog cancels its context when it is not kicked for its period.
type Watchdog struct {
	period time.Duration
	timer  *time.Timer
	cancel context.CancelCauseFunc
	fired  atomic.Bool
}

// New returns a child of ctx that a Watchdog cancels, with ErrStalled as
// the cause, once Kick has not been called for period. Call Stop when the
// work is over.
func New(ctx context.Context, period time.Duration) (context.Context, *Watchdog) {
	ctx, cancel := context.WithCancelCause(ctx)
	w := &Watchdog{period: period, cancel: cancel}
	w.timer = time.AfterFunc(period, func() {
		w.fired.Store(true)
		cancel(fmt.Errorf("%w for %s", ErrStalled, period))
	})
	return ctx, w
}

// Kick records progress.
func (w *Watchdog) Kick() { w.timer.Reset(w.period) }

// Stop ends the watch and cancels the context (the work is over).
func (w *Watchdog) Stop() {
	w.timer.Stop()
	w.cancel(context.Canceled)
}

// Fired reports whether the watchdog cancelled the context.
func (w *Watchdog) Fired() bool { return w.fired.Load() }

// Err returns err, or, when the watchdog fired, an error that says so and
// wraps both ErrStalled and err (whose own text is usually "context
// canceled").
func (w *Watchdog) Err(err error) error {
	if err == nil || !w.Fired() {
		return err
	}
	return fmt.Errorf("%w for %s: %w", ErrStalled, w.period, err)
}

// Reader returns r kicking the watchdog on every read that returns data,
// and on the end of r (what follows, the peer's answer, gets a full period).
func (w *Watchdog) Reader(r io.Reader) io.Reader { return &reader{r: r, w: w} }

type reader struct {
	r io.Reader
	w *Watchdog
}

func (r *reader) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	if n > 0 || err == io.EOF {
		r.w.Kick()
	}
	return n, err
}
