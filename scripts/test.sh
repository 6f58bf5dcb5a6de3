#!/usr/bin/env bash
# test.sh [all|lint|unit|fuzz]: what `make test` runs. Everything a test needs
# is installed and started here (see scripts/emulators.sh), and stopped again.
set -euo pipefail
cd "$(dirname "$0")/.."

GO=${GO:-go}
FUZZTIME=${FUZZTIME:-10s}
STATICCHECK_VERSION=v0.8.2

step() { printf '\n== %s\n' "$*" >&2; }

lint() {
  step "gofmt"
  local unformatted
  unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go' -not -path './var/*'))
  if [ -n "$unformatted" ]; then echo "gofmt needed: $unformatted" >&2; return 1; fi
  step "go vet"
  $GO vet ./...
  step "staticcheck $STATICCHECK_VERSION"
  $GO run "honnef.co/go/tools/cmd/staticcheck@$STATICCHECK_VERSION" ./...
  step "go mod tidy"
  $GO mod tidy -diff
}

unit() {
  step "storage emulators and the SendGrid API mock (scripts/emulators.sh)"
  PRISM_SPECS="$(ls testdata/sendgrid-oai/*.json | tr '\n' ' ')" scripts/emulators.sh up
  trap 'scripts/emulators.sh down' EXIT
  # shellcheck disable=SC1091
  source "${EMU_DIR:-/tmp/sgload-emu}/env"
  export SGLOAD_REQUIRE_EMULATORS=1
  step "go test -race"
  $GO test -race -shuffle=on -timeout 25m ./...
}

# Each fuzz target runs for a short, bounded time; `make fuzz FUZZTIME=10m`
# runs them longer. New failing inputs land in testdata/fuzz/ as regressions.
fuzz() {
  local target pkg
  while read -r target pkg; do
    step "fuzz $target ($FUZZTIME)"
    $GO test -run '^$' -fuzz "^$target\$" -fuzztime "$FUZZTIME" "$pkg"
  done <<'TARGETS'
FuzzParseBody ./webhook
FuzzParseRecord ./spool
FuzzObjects ./internal/jsonarray
TARGETS
}

case ${1:-all} in
  all) lint; unit; fuzz ;;
  lint) lint ;;
  unit) unit ;;
  fuzz) fuzz ;;
  *) echo "usage: $0 [all|lint|unit|fuzz]" >&2; exit 2 ;;
esac
step "ok"
