package webhook

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
)

// MinURLTokenLength keeps guessable tokens out: a token is the whole secret
// when it is the only method.
const MinURLTokenLength = 24

// URLTokens are the secret path tokens of POST /webhook/sendgrid/{token}.
// Several are live at once, so a new one can be set in SendGrid before the
// old one is removed and no POST is refused in between.
type URLTokens struct{ sums [][32]byte }

// NewURLTokens checks and stores the tokens (only their hashes are kept).
func NewURLTokens(tokens []string) (*URLTokens, error) {
	t := &URLTokens{}
	for i, tok := range tokens {
		if len(tok) < MinURLTokenLength {
			return nil, fmt.Errorf("url token %d is %d characters; use at least %d (sgload token new makes one)", i+1, len(tok), MinURLTokenLength)
		}
		t.sums = append(t.sums, sha256.Sum256([]byte(tok)))
	}
	if len(t.sums) == 0 {
		return nil, errors.New("no url token given")
	}
	return t, nil
}

// Valid reports whether tok is one of the live tokens, in time that does not
// depend on which one or on how much of it matched.
func (t *URLTokens) Valid(tok string) bool {
	sum := sha256.Sum256([]byte(tok))
	ok := 0
	for _, s := range t.sums {
		ok |= subtle.ConstantTimeCompare(sum[:], s[:])
	}
	return ok == 1
}

// NewURLToken returns a fresh random token: 32 bytes, base64url.
func NewURLToken() string {
	var b [32]byte
	_, _ = rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}
