package watchdog

import (
	"context"
	"errors"
	"io"
	"strings"
	"testing"
	"time"
)

func TestFiresOnlyWhenQuiet(t *testing.T) {
	ctx, w := New(context.Background(), 50*time.Millisecond)
	defer w.Stop()
	r := w.Reader(strings.NewReader("abc"))
	buf := make([]byte, 1)
	for range 3 {
		if _, err := r.Read(buf); err != nil {
			t.Fatal(err)
		}
	}
	<-ctx.Done() // nothing kicks it any more
	if !w.Fired() || !errors.Is(context.Cause(ctx), ErrStalled) {
		t.Fatalf("cause %v, fired %v", context.Cause(ctx), w.Fired())
	}
	if err := w.Err(ctx.Err()); !errors.Is(err, ErrStalled) {
		t.Fatalf("Err = %v", err)
	}
}

func TestStopIsNotAStall(t *testing.T) {
	ctx, w := New(context.Background(), time.Hour)
	if _, err := io.ReadAll(w.Reader(strings.NewReader("abc"))); err != nil {
		t.Fatal(err)
	}
	w.Stop()
	<-ctx.Done()
	if w.Fired() || w.Err(ctx.Err()) != ctx.Err() {
		t.Fatal("a stopped watchdog reported a stall")
	}
}
