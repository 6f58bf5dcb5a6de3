#!/usr/bin/env bash
# test.sh [all|lint|unit|deploy|fuzz]: what `make test` runs. Everything a test needs
# is installed and started here (see scripts/emulators.sh), and stopped again.
set -euo pipefail
cd "$(dirname "$0")/.."

GO=${GO:-go}
STATICCHECK_VERSION=v0.8.2

step() { printf '\n== %s\n' "$*" >&2; }

# repo_clean fails when a tracked file is an executable binary (a compiled
# test, a build) or is larger than 1 MB outside testdata/.
repo_clean() {
  step "tracked files: no binaries, nothing over 1 MB outside testdata/"
  local bad=() f size
  while IFS= read -r -d '' f; do
    [ -f "$f" ] || continue
    size=$(stat -c %s "$f")
    if [[ $f != testdata/* && $size -gt 1000000 ]]; then bad+=("$f ($size bytes)"); fi
    case $(head -c 4 "$f" | od -An -tx1 | tr -d ' \n') in
      7f454c46|cffaedfe|cefaedfe|4d5a*) bad+=("$f (an executable binary)") ;;
    esac
  done < <(git ls-files -z 2>/dev/null)
  if [ ${#bad[@]} -gt 0 ]; then printf 'not for the repository: %s\n' "${bad[@]}" >&2; return 1; fi
}

# tools installs, from Debian's packages, what the tests run for real and a
# fresh machine lacks: Chromium (the status page test), podman (the image),
# systemd-analyze (the units), readelf (static binaries), python3 (the
# Airflow DAG). One apt-get update, and only when something is missing.
tools() {
  local want=() cmd pkg
  while read -r cmd pkg; do
    command -v "$cmd" >/dev/null 2>&1 || want+=("$pkg")
  done <<'EOF_TOOLS'
chromium chromium
podman podman
systemd-analyze systemd
readelf binutils
python3 python3
EOF_TOOLS
  [ ${#want[@]} -gt 0 ] || return 0
  step "apt-get install ${want[*]}"
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
    echo "missing ${want[*]}: install them (Debian packages) or run as root" >&2; return 1
  fi
  apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${want[@]}" >&2
}

# deploy checks the release build, the container image, the systemd units,
# the Kubernetes manifests and the Airflow DAG (scripts/deploy-check.sh).
deploy() {
  tools
  scripts/deploy-check.sh all
}

lint() {
  repo_clean
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
  tools
  step "storage emulators and the SendGrid API mock (scripts/emulators.sh)"
  PRISM_SPECS="$(ls testdata/sendgrid-oai/*.json | tr '\n' ' ')" scripts/emulators.sh up
  trap 'scripts/emulators.sh down' EXIT
  # shellcheck disable=SC1091
  source "${EMU_DIR:-/tmp/sgload-emu}/env"
  export SGLOAD_REQUIRE_EMULATORS=1
  step "go test -race (artifacts, e.g. the status page screenshot, in var/test-artifacts/)"
  local artifacts=$PWD/var/test-artifacts
  rm -rf "$artifacts" && mkdir -p "$artifacts"
  $GO test -race -shuffle=on -timeout 25m -artifacts -outputdir "$artifacts" ./...
  find "$artifacts" -name '*.png' -printf 'artifact: %p\n' >&2
}

# Fuzz targets with the number of inputs `make test` runs each for: a count,
# not a duration, because Go 1.26's fuzz coordinator can fail a duration
# budget with "context deadline exceeded" on a loaded machine (golang/go#75804).
# `make fuzz FUZZTIME=10m` runs each for a duration instead. New failing
# inputs land in testdata/fuzz/ as regressions.
FUZZ_TARGETS='
FuzzParseBody    ./webhook             20000
FuzzParseRecord  ./spool               20000
FuzzObjects      ./internal/jsonarray  20000
FuzzMembers      ./internal/jsonarray  20000
FuzzDedupeKey    ./schema              20000
'

fuzz() {
  local budget=$1 target pkg count
  while read -r target pkg count; do
    [ -n "$target" ] || continue
    local t=${budget:-${count}x}
    step "fuzz $target ($t)"
    $GO test -run '^$' -fuzz "^$target\$" -fuzztime "$t" "$pkg"
  done <<<"$FUZZ_TARGETS"
}

case ${1:-all} in
  all) lint; unit; deploy; fuzz "" ;;
  lint) lint ;;
  deploy) deploy ;;
  unit) unit ;;
  fuzz) fuzz "${FUZZTIME:-1m}" ;;
  *) echo "usage: $0 [all|lint|unit|deploy|fuzz]" >&2; exit 2 ;;
esac
step "ok"
