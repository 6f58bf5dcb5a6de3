package webhook

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/x509"
	"encoding/asn1"
	"encoding/base64"
	"errors"
	"fmt"
	"math/big"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/sendgrid/sendgrid-go/helpers/eventwebhook"
)

// Header names SendGrid's Signed Event Webhook sets.
const (
	SignatureHeader = eventwebhook.VerificationHTTPHeader
	TimestampHeader = eventwebhook.TimestampHTTPHeader
)

// Signature verifies SendGrid's Signed Event Webhook: an ECDSA P-256
// signature over the timestamp header followed by the raw body. The check
// itself is SendGrid's own helper (sendgrid-go/helpers/eventwebhook).
type Signature struct {
	keys []*ecdsa.PublicKey
	// MaxAge refuses signatures whose timestamp is older than this. SendGrid
	// retries for 24 hours and does not document whether a retry is signed
	// afresh, so the default (25 h) lets every retry through; replays inside
	// the window only produce duplicates, which flush removes.
	MaxAge time.Duration
	// MaxSkew refuses timestamps further than this in the future.
	MaxSkew time.Duration
	Now     func() time.Time
}

// NewSignature parses the base64 DER public keys shown in SendGrid's Mail
// Settings > Event Webhook ("Verification Key"). Several keys may be live at
// once: one per webhook, or old and new while rotating.
func NewSignature(publicKeys []string) (*Signature, error) {
	s := &Signature{MaxAge: 25 * time.Hour, MaxSkew: 5 * time.Minute, Now: time.Now}
	for i, k := range publicKeys {
		k = strings.TrimSpace(k)
		k = strings.TrimPrefix(k, "-----BEGIN PUBLIC KEY-----")
		k = strings.TrimSuffix(k, "-----END PUBLIC KEY-----")
		k = strings.Join(strings.Fields(k), "")
		// sendgrid-go's converter panics on a key that is not ECDSA, so the
		// type is checked here first.
		der, err := base64.StdEncoding.DecodeString(k)
		if err != nil {
			return nil, fmt.Errorf("signing key %d: not base64: %w", i+1, err)
		}
		pub, err := x509.ParsePKIXPublicKey(der)
		if err != nil {
			return nil, fmt.Errorf("signing key %d: %w", i+1, err)
		}
		if ec, ok := pub.(*ecdsa.PublicKey); !ok || ec.Curve != elliptic.P256() {
			return nil, fmt.Errorf("signing key %d: not an ECDSA P-256 public key", i+1)
		}
		key, err := eventwebhook.ConvertPublicKeyBase64ToECDSA(k)
		if err != nil {
			return nil, fmt.Errorf("signing key %d: %w", i+1, err)
		}
		s.keys = append(s.keys, key)
	}
	if len(s.keys) == 0 {
		return nil, errors.New("no signing key given")
	}
	return s, nil
}

// Errors of signature checks; their text goes back to the sender.
var (
	ErrNoSignature    = errors.New("missing " + SignatureHeader + " or " + TimestampHeader + " header")
	ErrBadSignature   = errors.New("signature does not verify with any configured key")
	ErrStaleSignature = errors.New("signature timestamp is outside the accepted window")
)

// Verify checks the signature headers of h over body, exactly as received.
func (s *Signature) Verify(h http.Header, body []byte) error {
	c, err := s.Precheck(h)
	if err != nil {
		return err
	}
	d := signatureHash(c.ts)
	d.Write(body)
	return s.VerifyDigest(c, d.Sum(nil))
}

// Claim is what a request's signature headers say, checked as far as can
// be without the body.
type Claim struct {
	ts   string
	r, s *big.Int
}

// Precheck checks what needs no body: both headers present, the timestamp
// inside the window, the signature well-formed. Serve answers 401 on any
// of these before reading a byte of the body.
func (s *Signature) Precheck(h http.Header) (*Claim, error) {
	sig, ts := h.Get(SignatureHeader), h.Get(TimestampHeader)
	if sig == "" || ts == "" {
		return nil, ErrNoSignature
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return nil, fmt.Errorf("%w: timestamp %q is not Unix seconds", ErrStaleSignature, truncate(ts))
	}
	if s.MaxAge > 0 {
		now := s.Now()
		t := time.Unix(sec, 0)
		if now.Sub(t) > s.MaxAge || t.Sub(now) > s.MaxSkew {
			return nil, fmt.Errorf("%w: timestamp %s, now %s", ErrStaleSignature,
				t.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339))
		}
	}
	// The signature's decoding is sendgrid-go's (helpers/eventwebhook):
	// base64, then an ASN.1 sequence of r and s.
	der, err := base64.StdEncoding.DecodeString(sig)
	if err != nil {
		return nil, fmt.Errorf("%w: signature is not base64", ErrBadSignature)
	}
	var rs eventwebhook.RS
	if _, err := asn1.Unmarshal(der, &rs); err != nil || rs.R == nil || rs.S == nil {
		return nil, fmt.Errorf("%w: signature is not an ECDSA signature", ErrBadSignature)
	}
	return &Claim{ts: ts, r: rs.R, s: rs.S}, nil
}

// VerifyDigest checks a claim against the SHA-256 of the timestamp
// followed by the body (signatureHash), so the body can be hashed as it
// arrives instead of being held whole: the same check as sendgrid-go's
// eventwebhook.VerifySignature, which hashes the same bytes and calls
// ecdsa.Verify (TestDigestMatchesSendGrid holds them together).
func (s *Signature) VerifyDigest(c *Claim, digest []byte) error {
	for _, k := range s.keys {
		if ecdsa.Verify(k, digest, c.r, c.s) {
			return nil
		}
	}
	return ErrBadSignature
}

// Timestamp is the claim's timestamp header, which the digest starts with.
func (c *Claim) Timestamp() string { return c.ts }

func truncate(s string) string {
	if len(s) > 40 {
		return s[:40] + "..."
	}
	return s
}
