package spool

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/sgload/sgload/internal/durable"
)

// Quarantined is one body that could not be parsed, as stored in
// quarantine/<name>.json. The body is base64 in JSON since it is, by
// definition, not JSON.
type Quarantined struct {
	ReceivedAt time.Time         `json:"received_at"`
	Node       string            `json:"node"`
	Reason     string            `json:"reason"`
	Method     string            `json:"method"`
	Path       string            `json:"path"`
	Auth       string            `json:"auth"`
	Header     map[string]string `json:"header"`
	SHA256     string            `json:"sha256"`
	Body       []byte            `json:"body"`
}

// Quarantine stores q durably under a name derived from the body's hash, so a
// sender retrying the same bad body for 24 hours fills one file, not
// thousands. It returns the file name.
func (s *Writer) Quarantine(q Quarantined) (string, error) {
	q.Node = s.node
	name, created, err := WriteQuarantine(s.dir, "body", q)
	if created {
		s.m.quarantined.Inc()
	}
	return name, err
}

// WriteQuarantine stores q in d's quarantine folder as <kind>-<hash>.json,
// unless a file for the same bytes is there already. It reports whether it
// wrote a new file.
func WriteQuarantine(d Dir, kind string, q Quarantined) (name string, created bool, err error) {
	sum := sha256.Sum256(q.Body)
	q.SHA256 = hex.EncodeToString(sum[:])
	name = kind + "-" + q.SHA256[:32] + ".json"
	p := filepath.Join(d.Quarantine(), name)
	if _, err := os.Stat(p); err == nil {
		return name, false, nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return "", false, fmt.Errorf("quarantine %s: %w", p, err)
	}
	b, err := json.MarshalIndent(q, "", "  ")
	if err != nil {
		return "", false, fmt.Errorf("quarantine: %w", err)
	}
	if err := durable.WriteFile(p, append(b, '\n'), 0o600); err != nil {
		return "", false, fmt.Errorf("quarantine: %w", err)
	}
	return name, true, nil
}
