#!/usr/bin/env bash
# deploy-check.sh: what `make test` checks of the ways to install and deploy
# sgload, each with the real tool and quickly:
#   release     a static linux/amd64 binary (CGO_ENABLED=0) answering --version;
#               linux/arm64 and darwin/arm64 resolve every import (go list);
#               `make release` builds all three (slower: not part of make test)
#   image       the Containerfile built with podman, checked without running it
#   systemd     the units verified by systemd-analyze, hardening scored offline
#   kubernetes  the manifests decoded strictly with the k8s.io/api types
#   airflow     the example DAG compiles
set -euo pipefail
cd "$(dirname "$0")/.."

VERSION=${VERSION:-$(git describe --tags --always --dirty 2>/dev/null || echo dev)}
COMMIT=${COMMIT:-$(git rev-parse HEAD 2>/dev/null || true)}
OUT=${DEPLOY_CHECK_DIR:-var/deploy-check}
BIN=$OUT/sgload-$VERSION-linux-amd64
step() { printf '\n== deploy: %s\n' "$*" >&2; }

release() {
  step "release: static linux/amd64 binary"
  mkdir -p "$OUT"
  CGO_ENABLED=0 GOOS=linux GOARCH=amd64 go build -trimpath \
    -ldflags "-s -w -X main.version=$VERSION -X main.commit=$COMMIT" -o "$BIN" ./cmd/sgload
  if readelf -l "$BIN" | grep -q INTERP; then echo "$BIN is dynamically linked" >&2; return 1; fi
  local v; v=$("$BIN" --version)
  [[ $v == "sgload $VERSION (commit ${COMMIT:0:12}"* ]] || { echo "--version: $v" >&2; return 1; }
  echo "$v" >&2
  local p
  for p in linux/arm64 darwin/arm64; do
    step "release: $p resolves every import"
    CGO_ENABLED=0 GOOS=${p%/*} GOARCH=${p#*/} go list -deps -f '{{with .Error}}{{.}}{{end}}{{with .DepsErrors}}{{.}}{{end}}' ./cmd/sgload |
      { ! grep . >&2; }
  done
}

image() {
  step "image: podman build of the Containerfile"
  VERSION=$VERSION COMMIT=$COMMIT SGLOAD_BINARY=$BIN IMAGE_CONTEXT=$OUT/image scripts/image.sh all
}

systemd() {
  step "systemd: systemd-analyze verify and security"
  local units=$OUT/units f out
  rm -rf "$units" && mkdir -p "$units"
  # The units name /usr/local/bin/sgload and /etc/sgload/sgload.env; verify
  # checks that ExecStart exists, so point it at the binary just built.
  for f in deploy/systemd/*.service deploy/systemd/*.timer; do
    sed -e "s#/usr/local/bin/sgload#$PWD/$BIN#" -e "s#/etc/sgload/sgload.env#$PWD/deploy/systemd/sgload.env.example#" "$f" >"$units/$(basename "$f")"
  done
  # verify exits 0 after warnings such as an unknown key: any output fails.
  out=$(systemd-analyze verify "$units"/*.service "$units"/*.timer 2>&1 || true)
  if [ -n "$out" ]; then echo "$out" >&2; return 1; fi
  for f in "$units"/*.service; do
    systemd-analyze security --offline=true --threshold=20 --no-pager "$f" | tail -1 >&2
  done
}

kubernetes() {
  step "kubernetes: manifests decoded strictly (deploy/kubernetes, its own module)"
  (cd deploy/kubernetes && go mod tidy -diff && go vet ./... && go test -count=1 ./...)
}

airflow() {
  step "airflow: the DAG compiles"
  PYTHONPYCACHEPREFIX=$(mktemp -d) python3 -m py_compile deploy/airflow/sgload_dag.py
}

case ${1:-all} in
  all) release; image; systemd; kubernetes; airflow ;;
  release|image|systemd|kubernetes|airflow) "$1" ;;
  *) echo "usage: $0 [all|release|image|systemd|kubernetes|airflow]" >&2; exit 2 ;;
esac
