package bucket

import (
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
)

// Errors Open returns before asking the store anything; callers turn them
// into a usage error with the hint they carry.
var (
	// ErrBadURL: raw looks like a URL with a mistyped scheme separator
	// (s3:/acme), which would otherwise be taken as a folder named "s3:".
	ErrBadURL = errors.New("not a bucket URL")
	// ErrNoCredentials: the store's SDK would find no credentials in the
	// environment, and would fail later with a message about something else
	// (a PEM key, an account name option), or print a warning on stdout.
	ErrNoCredentials = errors.New("no credentials for the bucket")
	// ErrNoFolder: a local bucket folder that must exist does not.
	ErrNoFolder = errors.New("no bucket folder")
)

// HintError is an error with what to do about it.
type HintError struct {
	Err  error
	Hint string
}

func (e *HintError) Error() string { return e.Err.Error() }
func (e *HintError) Unwrap() error { return e.Err }

// schemeLike is a word that reads as a URL scheme followed by a colon.
var schemeLike = regexp.MustCompile(`^([a-zA-Z][a-zA-Z0-9+.-]*):`)

// knownSchemes are the stores sgload's command registers.
var knownSchemes = []string{"s3", "gs", "azblob", "file", "mem"}

// checkURL refuses what looks like a URL but is not one: "s3:/acme",
// "gs:acme", "azblob:/x". A folder whose name starts with a word and a
// colon must be written ./s3:acme.
func checkURL(raw string) error {
	if strings.Contains(raw, "://") {
		return nil
	}
	m := schemeLike.FindStringSubmatch(raw)
	if m == nil {
		return nil
	}
	scheme := strings.ToLower(m[1])
	rest := strings.TrimLeft(raw[len(m[0]):], "/")
	hint := fmt.Sprintf("write %s://%s (two slashes after the colon), or ./%s for a folder of that name", scheme, rest, raw)
	if !contains(knownSchemes, scheme) {
		hint = fmt.Sprintf("use s3://, gs://, azblob:// or file:// URLs, or ./%s for a folder of that name", raw)
	}
	return &HintError{Err: fmt.Errorf("%w: %q", ErrBadURL, raw), Hint: hint}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// checkCredentials looks, without any network call, for the credentials
// each cloud's SDK would use, so that a missing one is reported as such.
// Google's SDK would otherwise probe the metadata server, print a warning
// on stdout and fail later about PEM keys; Azure's would ask for an
// "AccountName option".
func checkCredentials(u *url.URL) error {
	q := u.Query()
	switch u.Scheme {
	case "gs":
		if os.Getenv("STORAGE_EMULATOR_HOST") != "" || q.Get("anonymous") == "true" || q.Get("access_id") == "-" {
			return nil
		}
		if p := os.Getenv("GOOGLE_APPLICATION_CREDENTIALS"); p != "" {
			if _, err := os.Stat(p); err != nil {
				return &HintError{Err: fmt.Errorf("%w: GOOGLE_APPLICATION_CREDENTIALS names %s: %w", ErrNoCredentials, p, err),
					Hint: "point GOOGLE_APPLICATION_CREDENTIALS at a service account key file (JSON) this user can read"}
			}
			return nil
		}
		if gcloudADC() || onGoogleCloud() {
			return nil
		}
		return &HintError{Err: fmt.Errorf("%w: no Google Cloud credentials found for %s", ErrNoCredentials, u.Redacted()),
			Hint: "set GOOGLE_APPLICATION_CREDENTIALS to a service account key file, run gcloud auth application-default login, or run on Google Cloud with a service account (workload identity)"}
	case "azblob":
		if os.Getenv("AZURE_STORAGE_ACCOUNT") != "" || q.Get("storage_account") != "" ||
			os.Getenv("AZURE_STORAGE_CONNECTION_STRING") != "" || os.Getenv("AZURE_STORAGEBLOB_CONNECTIONSTRING") != "" {
			return nil
		}
		return &HintError{Err: fmt.Errorf("%w: no Azure storage account named for %s", ErrNoCredentials, u.Redacted()),
			Hint: "set AZURE_STORAGE_ACCOUNT (with AZURE_STORAGE_KEY, AZURE_STORAGE_SAS_TOKEN or a managed identity), or AZURE_STORAGE_CONNECTION_STRING"}
	}
	return nil
}

// gcloudADC reports whether gcloud's application default credentials file
// exists (gcloud auth application-default login writes it).
func gcloudADC() bool {
	dir := os.Getenv("CLOUDSDK_CONFIG")
	if dir == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return false
		}
		dir = filepath.Join(home, ".config", "gcloud")
	}
	_, err := os.Stat(filepath.Join(dir, "application_default_credentials.json"))
	return err == nil
}

// onGoogleCloud reports whether this looks like a Google Cloud VM (GCE,
// GKE, Cloud Run), where the metadata server provides credentials: the
// same local signs Google's SDK reads first, without asking the network.
func onGoogleCloud() bool {
	if os.Getenv("GCE_METADATA_HOST") != "" || os.Getenv("K_SERVICE") != "" {
		return true
	}
	b, err := os.ReadFile("/sys/class/dmi/id/product_name")
	return err == nil && strings.Contains(string(b), "Google")
}
