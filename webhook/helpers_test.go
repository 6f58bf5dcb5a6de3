package webhook

import (
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"net/http"
	"strconv"
	"testing"
	"time"
)

// testSigner signs bodies the way SendGrid does, with the published test
// private key of sendgrid-go's first signature vector.
type testSigner struct {
	key       *ecdsa.PrivateKey
	publicKey string
}

func newTestSigner(t *testing.T) *testSigner {
	t.Helper()
	der, err := base64.StdEncoding.DecodeString(loadVectors(t).Keys["legacy_private_key_sec1_der_base64"].Value)
	if err != nil {
		t.Fatal(err)
	}
	k, err := x509.ParseECPrivateKey(der)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := x509.MarshalPKIXPublicKey(&k.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	return &testSigner{key: k, publicKey: base64.StdEncoding.EncodeToString(pub)}
}

func (s *testSigner) sign(body []byte, at time.Time) http.Header {
	ts := strconv.FormatInt(at.Unix(), 10)
	h := sha256.New()
	h.Write([]byte(ts))
	h.Write(body)
	sig, err := ecdsa.SignASN1(rand.Reader, s.key, h.Sum(nil))
	if err != nil {
		panic(err)
	}
	hdr := http.Header{}
	hdr.Set(SignatureHeader, base64.StdEncoding.EncodeToString(sig))
	hdr.Set(TimestampHeader, ts)
	return hdr
}
