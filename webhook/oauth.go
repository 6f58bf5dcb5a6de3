package webhook

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// OAuth is the OAuth 2.0 client-credentials server that SendGrid's Event
// Webhook OAuth option talks to: SendGrid posts its client id and secret to
// the token URL (POST /oauth/token), gets a short-lived bearer token, and
// sends it in the Authorization header of every webhook POST.
//
// Tokens are stateless: an expiry and a nonce, MACed with a key derived from
// the client secret. Every node configured with the same secret accepts them,
// and a restart does not void tokens SendGrid still holds.
type OAuth struct {
	clientID string
	secret   []byte
	key      []byte
	TTL      time.Duration
	Now      func() time.Time
}

// NewOAuth configures the one client allowed to get tokens.
func NewOAuth(clientID, clientSecret string, ttl time.Duration) (*OAuth, error) {
	if clientID == "" || clientSecret == "" {
		return nil, errors.New("oauth needs both a client id and a client secret")
	}
	if len(clientSecret) < 16 {
		return nil, errors.New("oauth client secret is shorter than 16 characters")
	}
	if ttl <= 0 {
		ttl = time.Hour
	}
	mac := hmac.New(sha256.New, []byte(clientSecret))
	mac.Write([]byte("sgload oauth access token v1\x00" + clientID))
	return &OAuth{clientID: clientID, secret: []byte(clientSecret), key: mac.Sum(nil), TTL: ttl, Now: time.Now}, nil
}

const tokenPrefix = "sgl1."

// Issue returns a new access token and its expiry.
func (o *OAuth) Issue() (string, time.Time) {
	exp := o.Now().Add(o.TTL).Truncate(time.Second)
	var payload [20]byte
	binary.BigEndian.PutUint64(payload[:8], uint64(exp.Unix()))
	_, _ = rand.Read(payload[8:])
	p := base64.RawURLEncoding.EncodeToString(payload[:])
	return tokenPrefix + p + "." + base64.RawURLEncoding.EncodeToString(o.mac(p)), exp
}

func (o *OAuth) mac(payload string) []byte {
	m := hmac.New(sha256.New, o.key)
	m.Write([]byte(payload))
	return m.Sum(nil)
}

// Errors of bearer checks.
var (
	ErrNoBearer      = errors.New("missing bearer token in Authorization header")
	ErrInvalidBearer = errors.New("bearer token is not valid")
	ErrExpiredBearer = errors.New("bearer token has expired")
)

// Check validates the bearer token in an Authorization header value.
func (o *OAuth) Check(authorization string) error {
	scheme, tok, ok := strings.Cut(authorization, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || tok == "" {
		return ErrNoBearer
	}
	rest, ok := strings.CutPrefix(strings.TrimSpace(tok), tokenPrefix)
	if !ok {
		return ErrInvalidBearer
	}
	p, sig, ok := strings.Cut(rest, ".")
	if !ok {
		return ErrInvalidBearer
	}
	got, err := base64.RawURLEncoding.DecodeString(sig)
	if err != nil || !hmac.Equal(got, o.mac(p)) {
		return ErrInvalidBearer
	}
	payload, err := base64.RawURLEncoding.DecodeString(p)
	if err != nil || len(payload) != 20 {
		return ErrInvalidBearer
	}
	if exp := time.Unix(int64(binary.BigEndian.Uint64(payload[:8])), 0); !o.Now().Before(exp) {
		return ErrExpiredBearer
	}
	return nil
}

// ServeHTTP is the token endpoint (RFC 6749 section 4.4). The client may
// authenticate with HTTP Basic or with client_id and client_secret in the
// form body (section 2.3.1); a JSON body is accepted too, since SendGrid does
// not document which it sends. (Serve mounts it through Handler.token, which
// adds the metric, the log and the slow-down.)
func (o *OAuth) ServeHTTP(w http.ResponseWriter, r *http.Request) { o.serveToken(w, r) }

// serveToken answers a token request and returns its result: "issued",
// or the OAuth error code.
func (o *OAuth) serveToken(w http.ResponseWriter, r *http.Request) string {
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Pragma", "no-cache")
	params, err := tokenParams(r)
	if err != nil {
		oauthError(w, http.StatusBadRequest, "invalid_request", "the request body cannot be read as a form or JSON")
		return "invalid_request"
	}
	id, secret, basic := r.BasicAuth()
	if basic {
		// Basic credentials are form-urlencoded before base64 (RFC 6749 2.3.1).
		if u, err := url.QueryUnescape(id); err == nil {
			id = u
		}
		if u, err := url.QueryUnescape(secret); err == nil {
			secret = u
		}
	} else {
		id, secret = params.Get("client_id"), params.Get("client_secret")
	}
	if !o.clientMatches(id, secret) {
		if basic {
			w.Header().Set("WWW-Authenticate", `Basic realm="sgload"`)
		}
		oauthError(w, http.StatusUnauthorized, "invalid_client", "unknown client or wrong secret")
		return "invalid_client"
	}
	if gt := params.Get("grant_type"); gt != "client_credentials" {
		oauthError(w, http.StatusBadRequest, "unsupported_grant_type", "only client_credentials is supported")
		return "unsupported_grant_type"
	}
	tok, exp := o.Issue()
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{
		"access_token": tok,
		"token_type":   "Bearer",
		"expires_in":   int(time.Until(exp).Seconds()),
	})
	return "issued"
}

// Failed token requests allowed per client address: a burst, then one
// every few seconds. SendGrid, which knows the secret, never fails.
const (
	tokenFailBurst  = 5
	tokenFailPeriod = 6 * time.Second
	tokenGuardMax   = 10000 // addresses remembered
)

// tokenGuard slows guessing at the token endpoint, per client address.
type tokenGuard struct {
	mu  sync.Mutex
	ips map[netip.Addr]*rate.Limiter
}

func newTokenGuard() *tokenGuard { return &tokenGuard{ips: map[netip.Addr]*rate.Limiter{}} }

func (g *tokenGuard) limiter(a netip.Addr) *rate.Limiter {
	g.mu.Lock()
	defer g.mu.Unlock()
	l := g.ips[a]
	if l == nil {
		if len(g.ips) >= tokenGuardMax {
			// Forget the addresses that have their whole allowance back.
			now := time.Now()
			for k, v := range g.ips {
				if v.TokensAt(now) >= tokenFailBurst {
					delete(g.ips, k)
				}
			}
			if len(g.ips) >= tokenGuardMax {
				clear(g.ips) // every address is failing: start over
			}
		}
		l = rate.NewLimiter(rate.Every(tokenFailPeriod), tokenFailBurst)
		g.ips[a] = l
	}
	return l
}

// token is POST /oauth/token with what an endpoint that takes secrets
// needs: failures counted (sgload_oauth_token_requests_total) and logged
// (a few lines a second at most, never the credentials tried), and an
// address that keeps failing answered 429 without a check until it has
// waited.
func (s *Handler) token(w http.ResponseWriter, r *http.Request) {
	if !s.allowed(w, r) {
		return
	}
	a, _ := remoteAddr(r)
	lim := s.tokens.limiter(a)
	// Only failures spend the allowance (a success costs nothing), so it is
	// looked at first and spent after; concurrent guesses from one address
	// may overdraw it by their number, which the wait then repays.
	if now := time.Now(); lim.TokensAt(now) < 1 {
		d := lim.ReserveN(now, 1).DelayFrom(now) // what one more failure would wait
		s.m.tokens.WithLabelValues("throttled").Inc()
		if ok, n := s.logAuth.allow(); ok {
			s.log.Warn("OAuth token request refused: too many failed attempts from this address", "remote", r.RemoteAddr, "suppressed", n)
		}
		w.Header().Set("Retry-After", strconv.Itoa(int(d.Seconds())+1))
		oauthError(w, http.StatusTooManyRequests, "invalid_client", "too many failed attempts from this address; retry later")
		return
	}
	result := s.cfg.OAuth.serveToken(w, r)
	s.m.tokens.WithLabelValues(result).Inc()
	if result == "issued" {
		return
	}
	lim.Allow()
	if ok, n := s.logAuth.allow(); ok {
		s.log.Warn("OAuth token request refused", "result", result, "remote", r.RemoteAddr,
			"user_agent", truncate(r.UserAgent()), "suppressed", n)
	}
}

func (o *OAuth) clientMatches(id, secret string) bool {
	a := sha256.Sum256([]byte(id))
	b := sha256.Sum256([]byte(o.clientID))
	c := sha256.Sum256([]byte(secret))
	d := sha256.Sum256(o.secret)
	return subtle.ConstantTimeCompare(a[:], b[:])&subtle.ConstantTimeCompare(c[:], d[:]) == 1
}

func tokenParams(r *http.Request) (url.Values, error) {
	r.Body = http.MaxBytesReader(nil, r.Body, 64<<10)
	ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if ct == "application/json" {
		var m map[string]any
		if err := json.NewDecoder(r.Body).Decode(&m); err != nil {
			return nil, fmt.Errorf("JSON body: %v", err)
		}
		v := url.Values{}
		for k, x := range m {
			if s, ok := x.(string); ok {
				v.Set(k, s)
			}
		}
		return v, nil
	}
	if err := r.ParseForm(); err != nil {
		return nil, err
	}
	return r.Form, nil
}

func oauthError(w http.ResponseWriter, status int, code, desc string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": code, "error_description": desc})
}
