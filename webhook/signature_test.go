package webhook

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"testing"
	"time"

	"github.com/sendgrid/sendgrid-go/helpers/eventwebhook"
)

type vectorFile struct {
	Keys map[string]struct {
		Value string `json:"value"`
	} `json:"keys"`
	Vectors []struct {
		ID            string `json:"id"`
		PublicKeyRef  string `json:"public_key_ref"`
		Timestamp     string `json:"timestamp"`
		Signature     string `json:"signature"`
		ExpectValid   bool   `json:"expect_valid"`
		PayloadBase64 string `json:"payload_base64"`
	} `json:"vectors"`
	KeyParseCases []struct {
		ID          string `json:"id"`
		PublicKey   string `json:"public_key"`
		ExpectError bool   `json:"expect_error"`
	} `json:"key_parse_cases"`
}

func loadVectors(t *testing.T) vectorFile {
	t.Helper()
	b, err := os.ReadFile("../testdata/signatures/sendgrid-signature-vectors.json")
	if err != nil {
		t.Fatal(err)
	}
	var v vectorFile
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatal(err)
	}
	if len(v.Vectors) < 18 {
		t.Fatalf("only %d vectors loaded", len(v.Vectors))
	}
	return v
}

// TestSignatureVectors runs every SendGrid signature vector through the same
// Verify that serve uses, with the clock set to the vector's own time.
func TestSignatureVectors(t *testing.T) {
	vf := loadVectors(t)
	for _, v := range vf.Vectors {
		t.Run(v.ID, func(t *testing.T) {
			sig, err := NewSignature([]string{vf.Keys[v.PublicKeyRef].Value})
			if err != nil {
				t.Fatal(err)
			}
			sig.Now = func() time.Time { return time.Unix(1606575372, 0) }
			sig.MaxAge = 0 // the vectors are years old; the window is tested below
			payload, err := base64.StdEncoding.DecodeString(v.PayloadBase64)
			if err != nil {
				t.Fatal(err)
			}
			h := http.Header{}
			h.Set(SignatureHeader, v.Signature)
			h.Set(TimestampHeader, v.Timestamp)
			err = sig.Verify(h, payload)
			if got := err == nil; got != v.ExpectValid {
				t.Fatalf("valid = %v (%v), want %v", got, err, v.ExpectValid)
			}
			// SendGrid's own helper gives the same verdict (serve hashes the
			// body as it arrives and verifies the digest itself).
			key, err := eventwebhook.ConvertPublicKeyBase64ToECDSA(vf.Keys[v.PublicKeyRef].Value)
			if err != nil {
				return // a key form the helper does not read (NewSignature strips PEM armour)
			}
			ok, _ := eventwebhook.VerifySignature(key, payload, v.Signature, v.Timestamp)
			if ok != v.ExpectValid {
				t.Fatalf("sendgrid-go says %v, the vector %v", ok, v.ExpectValid)
			}
		})
	}
	for _, c := range vf.KeyParseCases {
		t.Run(c.ID, func(t *testing.T) {
			_, err := NewSignature([]string{c.PublicKey})
			if (err != nil) != c.ExpectError {
				t.Fatalf("NewSignature error = %v, want error %v", err, c.ExpectError)
			}
		})
	}
}

func TestSignatureWindowAndKeys(t *testing.T) {
	signer := newTestSigner(t)
	body := []byte("[{\"event\":\"open\"}]\r\n")
	now := time.Unix(1_800_000_000, 0)
	sig, err := NewSignature([]string{loadVectors(t).Keys["current_public_key"].Value, signer.publicKey})
	if err != nil {
		t.Fatal(err)
	}
	sig.Now = func() time.Time { return now }
	tests := []struct {
		name string
		at   time.Time
		want error
	}{
		{"fresh, second key of two", now, nil},
		{"24 hours old (a SendGrid retry)", now.Add(-24 * time.Hour), nil},
		{"older than the window", now.Add(-26 * time.Hour), ErrStaleSignature},
		{"from the future", now.Add(10 * time.Minute), ErrStaleSignature},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := signer.sign(body, tc.at)
			if err := sig.Verify(h, body); !errors.Is(err, tc.want) {
				t.Fatalf("Verify = %v, want %v", err, tc.want)
			}
		})
	}
	if err := sig.Verify(http.Header{}, body); !errors.Is(err, ErrNoSignature) {
		t.Fatalf("no headers: %v", err)
	}
}

func TestNewSignatureRejectsOtherKeys(t *testing.T) {
	// An RSA key: sendgrid-go's converter would panic on it.
	rk, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	der, _ := x509.MarshalPKIXPublicKey(&rk.PublicKey)
	rsaKey := base64.StdEncoding.EncodeToString(der)
	for _, k := range []string{rsaKey, "", "not base64!"} {
		if _, err := NewSignature([]string{k}); err == nil {
			t.Errorf("NewSignature(%q) accepted", k)
		}
	}
	pem := "-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE83T4O/n84iotIvIW4mdBgQ/7dAfSmpqIM8kF9mN1flpV\nKS3GRqe62gw+2fNNRaINXvVpiglSI8eNEc6wEA3F+g==\n-----END PUBLIC KEY-----\n"
	if _, err := NewSignature([]string{pem}); err != nil {
		t.Errorf("PEM-wrapped key refused: %v", err)
	}
}
