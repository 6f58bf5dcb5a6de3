package webhook

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"

	"github.com/sgload/sgload/spool"
)

// recentCount counts events over the last 10 seconds, a bucket a second.
type recentCount struct {
	mu      sync.Mutex
	seconds [10]int64 // the second each bucket counts
	counts  [10]int64
}

func (c *recentCount) add(now time.Time) {
	sec := now.Unix()
	i := sec % 10
	c.mu.Lock()
	if c.seconds[i] != sec {
		c.seconds[i], c.counts[i] = sec, 0
	}
	c.counts[i]++
	c.mu.Unlock()
}

func (c *recentCount) total(now time.Time) int64 {
	sec := now.Unix()
	var n int64
	c.mu.Lock()
	for i := range c.counts {
		if sec-c.seconds[i] < 10 {
			n += c.counts[i]
		}
	}
	c.mu.Unlock()
	return n
}

// throttle keeps a flood of refused requests from becoming a flood of log
// lines: a few a second, and the next line that gets through says how many
// were left out.
type throttle struct {
	lim        *rate.Limiter
	suppressed *atomic.Int64
}

func newThrottle() throttle {
	return throttle{lim: rate.NewLimiter(1, 5), suppressed: new(atomic.Int64)}
}

// allow reports whether to log now, and how many lines were left out since
// the last one logged.
func (t throttle) allow() (bool, int64) {
	if !t.lim.Allow() {
		t.suppressed.Add(1)
		return false, 0
	}
	return true, t.suppressed.Swap(0)
}

// allowed answers 403 to a sender outside AllowNetworks.
func (s *Handler) allowed(w http.ResponseWriter, r *http.Request) bool {
	if len(s.cfg.AllowNetworks) == 0 {
		return true
	}
	if a, ok := remoteAddr(r); ok {
		for _, p := range s.cfg.AllowNetworks {
			if p.Contains(a) {
				return true
			}
		}
	}
	s.m.refused.WithLabelValues(refusedNetwork).Inc()
	if ok, n := s.logRefusal.allow(); ok {
		s.log.Warn("request from outside --allow-cidr refused with 403", "remote", r.RemoteAddr, "path", pathForLog(r), "suppressed", n)
	}
	w.Header().Set("Connection", "close")
	writeJSON(w, http.StatusForbidden, map[string]any{"error": "sender's network is not allowed"})
	return false
}

// pathForLog is the request's path without a URL token.
func pathForLog(r *http.Request) string {
	if strings.HasPrefix(r.URL.Path, "/webhook/sendgrid/") {
		return "/webhook/sendgrid/{token}"
	}
	return r.URL.Path
}

// remoteAddr is the TCP peer's address (IPv4-mapped IPv6 unmapped).
func remoteAddr(r *http.Request) (netip.Addr, bool) {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return netip.Addr{}, false
	}
	return a.Unmap(), true
}

// ParseNetworks reads --allow-cidr values: CIDRs, or single addresses.
func ParseNetworks(values []string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, v := range values {
		v = strings.TrimSpace(v)
		if v == "" {
			continue
		}
		if p, err := netip.ParsePrefix(v); err == nil {
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(v)
		if err != nil {
			return nil, fmt.Errorf("network %q: want a CIDR such as 192.0.2.0/24 or an address", v)
		}
		out = append(out, netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()))
	}
	return out, nil
}

// Pressure is how loaded the webhook is, for /readyz and tests.
type Pressure struct {
	// Level is "high" when requests were refused for lack of capacity, or
	// cut off as too slow, in the last 10 s; "elevated" when a budget is
	// more than half used, more senders await their signature check than
	// MaxInFlight, or authentication failed in the last 10 s; else "none".
	Level                  string
	Refused10s             int64
	AuthFailures10s        int64
	Authenticated          int
	Unauthenticated        int64
	BodyMemory, MemoryMax  int64
	Unauth, UnauthMax      int64
	InFlight, InFlightMax  int
	MemoryFull, UnauthFull bool
}

// Pressure reports the webhook's load now.
func (s *Handler) Pressure() Pressure {
	now := time.Now()
	p := Pressure{
		Refused10s:      s.pressure.total(now),
		AuthFailures10s: s.authFails.total(now),
		Unauthenticated: s.unauthReqs.Load(),
		BodyMemory:      s.mem.used.Load(), MemoryMax: s.mem.limit,
		Unauth: s.unauth.used.Load(), UnauthMax: s.unauth.limit,
		InFlight: len(s.inflight), InFlightMax: cap(s.inflight),
	}
	p.Authenticated = p.InFlight
	switch {
	case p.Refused10s > 0:
		p.Level = "high"
	case 2*p.BodyMemory > p.MemoryMax || 2*p.Unauth > p.UnauthMax || 2*p.InFlight > p.InFlightMax ||
		p.Unauthenticated > int64(p.InFlightMax) || p.AuthFailures10s > 0:
		p.Level = "elevated"
	default:
		p.Level = "none"
	}
	return p
}

// readyz is 200 while the spool takes writes, with the webhook's pressure
// in the body (and the X-Sgload-Pressure header): under attack, real
// SendGrid POSTs still get through, so taking the node out of a load
// balancer would only help the attacker. It names no path and no free
// space (the listener is public); the log has the details.
func (s *Handler) readyz(w http.ResponseWriter, r *http.Request) {
	p := s.Pressure()
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Sgload-Pressure", p.Level)
	var b strings.Builder
	status := http.StatusOK
	if err := s.cfg.Spool.Ready(); err != nil {
		status = http.StatusServiceUnavailable
		fmt.Fprintf(&b, "not ready: %s\n", publicReason(err))
		if ok, n := s.logRefusal.allow(); ok {
			s.log.Warn("not ready", "err", err, "suppressed", n)
		}
	} else {
		b.WriteString("ready\n")
	}
	fmt.Fprintf(&b, "pressure: %s", p.Level)
	if p.Refused10s > 0 {
		fmt.Fprintf(&b, " (%d requests refused for lack of capacity or too slow in the last 10s)", p.Refused10s)
	}
	fmt.Fprintf(&b, "\nauthentication failures in the last 10s: %d", p.AuthFailures10s)
	fmt.Fprintf(&b, "\nrequests in flight: %d authenticated (limit %d), %d not yet authenticated\n",
		p.Authenticated, p.InFlightMax, p.Unauthenticated)
	fmt.Fprintf(&b, "body memory: %s of %s\n", mib(p.BodyMemory), mib(p.MemoryMax))
	fmt.Fprintf(&b, "unauthenticated bytes: %s of %s\n", mib(p.Unauth), mib(p.UnauthMax))
	w.WriteHeader(status)
	_, _ = io.WriteString(w, b.String())
}

func mib(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }

// publicReason says why the spool is not ready without naming its path or
// the free space.
func publicReason(err error) string {
	switch {
	case errors.Is(err, spool.ErrClosed):
		return "spool closed (shutting down)"
	case errors.Is(err, spool.ErrDiskFull):
		return "spool disk below the free-space floor"
	case errors.Is(err, spool.ErrNotWritable):
		return "spool not writable"
	case errors.Is(err, spool.ErrWriteFailed):
		return "a spool write failed in the last 30s"
	}
	return "spool not ready"
}
