package webhook

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
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
	sig, ts := h.Get(SignatureHeader), h.Get(TimestampHeader)
	if sig == "" || ts == "" {
		return ErrNoSignature
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return fmt.Errorf("%w: timestamp %q is not Unix seconds", ErrStaleSignature, ts)
	}
	if s.MaxAge > 0 {
		now := s.Now()
		t := time.Unix(sec, 0)
		if now.Sub(t) > s.MaxAge || t.Sub(now) > s.MaxSkew {
			return fmt.Errorf("%w: timestamp %s, now %s", ErrStaleSignature,
				t.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339))
		}
	}
	return s.verify(body, sig, ts)
}

func (s *Signature) verify(body []byte, sig, ts string) error {
	for _, k := range s.keys {
		ok, err := eventwebhook.VerifySignature(k, body, sig, ts)
		if err != nil {
			return fmt.Errorf("%w: %v", ErrBadSignature, err)
		}
		if ok {
			return nil
		}
	}
	return ErrBadSignature
}
