// Command sgload lands SendGrid email events and objects in object storage
// as Parquet. See README.md, or run sgload --help.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	// Mozilla's root certificates, used only where the system has none: the
	// container image is FROM scratch, and sgload still reaches S3, GCS,
	// Azure and SendGrid over HTTPS.
	_ "golang.org/x/crypto/x509roots/fallback"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := newApp(os.Stdout, os.Stderr).RunContext(ctx, os.Args)
	stop()
	os.Exit(exitCode(err, os.Stderr))
}
