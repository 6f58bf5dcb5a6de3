package layout_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/sgload/sgload/internal/testbucket"
	"github.com/sgload/sgload/layout"
)

// TestRenewIfDue: a renewal in a loop writes the lease only once a quarter
// of its time has passed, and still notices a takeover when it does.
func TestRenewIfDue(t *testing.T) {
	ctx := context.Background()
	b := testbucket.Open(t, "file").Bucket
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	l, err := layout.AcquireLease(ctx, b, "p", "part", "a", 8*time.Minute, t0)
	if err != nil {
		t.Fatal(err)
	}
	gens := func() int {
		t.Helper()
		n := 0
		it := b.List(nil)
		for {
			if _, err := it.Next(ctx); err != nil {
				return n
			}
			n++
		}
	}
	for _, step := range []struct {
		at   time.Duration
		want int
	}{
		{time.Minute, 1}, {119 * time.Second, 1}, // within the first quarter: nothing written
		{2 * time.Minute, 2}, // due: a new generation
		{3 * time.Minute, 2}, // a quarter from the renewal not yet passed
		{4 * time.Minute, 3},
	} {
		if err := l.RenewIfDue(ctx, t0.Add(step.at)); err != nil {
			t.Fatalf("at %s: %v", step.at, err)
		}
		if n := gens(); n != step.want {
			t.Errorf("at %s: %d lease generations written, want %d", step.at, n, step.want)
		}
	}
	// Once expired, another holder takes it; the first holder's next due
	// renewal fails.
	if _, err := layout.AcquireLease(ctx, b, "p", "part", "b", 8*time.Minute, t0.Add(13*time.Minute)); err != nil {
		t.Fatal(err)
	}
	if err := l.RenewIfDue(ctx, t0.Add(14*time.Minute)); !errors.Is(err, layout.ErrLeased) {
		t.Fatalf("renewal after a takeover: %v, want ErrLeased", err)
	}
}
