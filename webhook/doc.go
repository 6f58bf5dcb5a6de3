// Package webhook is the HTTP side of sgload serve: it authenticates SendGrid
// Event Webhook POSTs (signed webhook, OAuth 2.0 bearer tokens, secret URL
// tokens, in any combination), checks the body, and answers 2xx only once
// the spool has made the POST durable (Handler). Server is serve as a
// whole: the spool's Writer, the Handler on an HTTP server, the raw tees
// and any background jobs, opened and closed together.
//
// What a sender that holds no secret can cost is bounded (ingest.go): bytes
// by two budgets (memory, and memory or disk for senders not yet
// authenticated; large bodies wait for their signature check on disk), time
// by a minimum body rate and a body timeout, and the MaxInFlight places go
// to authenticated requests only. docs/ARCHITECTURE.md, "Threat model".
//
// Status codes are chosen for SendGrid's retry behaviour: it retries any
// non-2xx for 24 hours, so every refusal that a later retry can cure (disk
// full, spool unwritable, overload) is a 503, and a refusal that no retry can
// cure still loses nothing: an authenticated body that cannot be parsed is
// kept in quarantine before the 400 goes out.
package webhook
