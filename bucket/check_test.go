package bucket

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestMistypedURLs(t *testing.T) {
	tests := []struct {
		raw  string
		hint string // "" means accepted
	}{
		{"s3:/acme", "write s3://acme"},
		{"s3:acme", "write s3://acme"},
		{"GS:/acme", "write gs://acme"},
		{"azblob:/c?domain=x", "write azblob://c?domain=x"},
		{"ftp:/x", "use s3://, gs://, azblob:// or file:// URLs"},
		{"s3://acme", ""},
		{"./s3:acme", ""},
		{"warehouse/2026", ""},
		{"/abs/warehouse", ""},
	}
	for _, tc := range tests {
		err := checkURL(tc.raw)
		var he *HintError
		switch {
		case tc.hint == "" && err != nil:
			t.Errorf("%q refused: %v", tc.raw, err)
		case tc.hint != "" && (!errors.Is(err, ErrBadURL) || !errors.As(err, &he) || !strings.Contains(he.Hint, tc.hint)):
			t.Errorf("%q: %v, want ErrBadURL with hint %q", tc.raw, err, tc.hint)
		}
	}
}

func TestMissingCloudCredentials(t *testing.T) {
	for _, k := range []string{"STORAGE_EMULATOR_HOST", "GOOGLE_APPLICATION_CREDENTIALS", "GCE_METADATA_HOST", "K_SERVICE",
		"CLOUDSDK_CONFIG", "AZURE_STORAGE_ACCOUNT", "AZURE_STORAGE_CONNECTION_STRING", "AZURE_STORAGEBLOB_CONNECTIONSTRING"} {
		t.Setenv(k, "")
	}
	t.Setenv("HOME", t.TempDir())
	ctx := context.Background()
	if onGoogleCloud() {
		t.Log("on a Google Cloud VM: gs:// has the VM's credentials")
	} else if _, err := Open(ctx, "gs://acme"); !errors.Is(err, ErrNoCredentials) || !strings.Contains(err.Error(), "Google Cloud credentials") {
		t.Errorf("gs:// without credentials: %v", err)
	}
	if _, err := Open(ctx, "azblob://acme"); !errors.Is(err, ErrNoCredentials) || !strings.Contains(err.(*HintError).Hint, "AZURE_STORAGE_ACCOUNT") {
		t.Errorf("azblob:// without an account: %v", err)
	}
	t.Setenv("GOOGLE_APPLICATION_CREDENTIALS", filepath.Join(t.TempDir(), "missing.json"))
	if _, err := Open(ctx, "gs://acme"); !errors.Is(err, ErrNoCredentials) || !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a missing key file: %v", err)
	}
}

func TestOpenExistingMakesNoFolder(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "warehuose")
	if _, err := OpenExisting(context.Background(), dir); !errors.Is(err, ErrNoFolder) {
		t.Fatalf("OpenExisting of a missing folder: %v", err)
	}
	if _, err := os.Stat(dir); err == nil {
		t.Fatal("OpenExisting made the folder")
	}
}
