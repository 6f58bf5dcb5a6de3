#!/usr/bin/env bash
# image.sh build|check: build the container image (Containerfile) with
# podman, and check it without running it (containers cannot run on the
# project's machines): the binary inside is static and answers --version,
# the image runs as a non-root user with the spool as a volume.
set -euo pipefail
cd "$(dirname "$0")/.."

VERSION=${VERSION:-dev} COMMIT=${COMMIT:-$(git rev-parse HEAD 2>/dev/null || true)}
TAG=${IMAGE_TAG:-localhost/sgload:${VERSION}}
CTX=${IMAGE_CONTEXT:-var/image}
log() { echo "image: $*" >&2; }

build() {
  rm -rf "$CTX" && mkdir -p "$CTX/spool" "$CTX/tmp"
  if [ -n "${SGLOAD_BINARY:-}" ]; then # a static linux/amd64 build already made
    cp "$SGLOAD_BINARY" "$CTX/sgload"
  else
    CGO_ENABLED=0 GOOS=linux GOARCH=amd64 go build -trimpath \
      -ldflags "-s -w -X main.version=$VERSION -X main.commit=$COMMIT" -o "$CTX/sgload" ./cmd/sgload
  fi
  podman build --quiet -f Containerfile -t "$TAG" "$CTX" >/dev/null
  log "built $TAG"
}

check() {
  local user vols out mnt
  user=$(podman image inspect --format '{{.Config.User}}' "$TAG")
  vols=$(podman image inspect --format '{{range $k, $v := .Config.Volumes}}{{$k}} {{end}}' "$TAG")
  [ "$user" = "65532:65532" ] || { log "runs as '$user', want 65532:65532"; return 1; }
  [[ " $vols " == *" /var/lib/sgload "* ]] || { log "volumes '$vols', want /var/lib/sgload"; return 1; }
  # Read the binary out of the image and run it here.
  out=$(mktemp -d)
  podman save --format docker-archive -o "$out/image.tar" "$TAG"
  tar -xf "$out/image.tar" -C "$out"
  local layer found=""
  for layer in $(find "$out" -name '*.tar' ! -name image.tar); do
    if tar -tf "$layer" | grep -qx 'usr/local/bin/sgload'; then
      tar -xf "$layer" -C "$out" usr/local/bin/sgload && found=$out/usr/local/bin/sgload
    fi
  done
  [ -n "$found" ] || { log "no usr/local/bin/sgload in any layer"; rm -rf "$out"; return 1; }
  if readelf -l "$found" | grep -q INTERP; then log "the binary is not static"; rm -rf "$out"; return 1; fi
  local v
  v=$("$found" --version)
  rm -rf "$out"
  case $v in
    "sgload $VERSION (commit ${COMMIT:0:12}"*) log "ok: $v; user $user; volume $vols" ;;
    *) log "--version said '$v', want sgload $VERSION (commit ${COMMIT:0:12}...)"; return 1 ;;
  esac
}

case ${1:-} in
  build) build ;;
  check) check ;;
  all) build; check ;;
  *) echo "usage: $0 build|check|all" >&2; exit 2 ;;
esac
