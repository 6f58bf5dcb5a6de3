#!/usr/bin/env bash
# emulators.sh up|down|install: install (once per pinned version, cached under
# ~/.cache/sgload-tools), start and stop the real servers the tests run against:
#   S3     VersityGW (posix backend)     127.0.0.1:$S3_PORT
#   GCS    fake-gcs-server               127.0.0.1:$GCS_PORT
#   Azure  Azurite (blob only)           127.0.0.1:$AZ_PORT
#   API    Stoplight Prism per spec file 127.0.0.1:$PRISM_PORT.. (when PRISM_SPECS is set)
# `up` returns once every server answers HTTP and writes $EMU_DIR/env for tests to source.
# `down` stops exactly the PIDs `up` started. Everything binds to loopback only.
set -euo pipefail

VERSITYGW_VERSION=v1.8.0   # github.com/versity/versitygw (maintained; MinIO's repository is archived)
FAKE_GCS_VERSION=v1.56.1   # github.com/fsouza/fake-gcs-server
AZURITE_VERSION=3.35.0     # newest azurite whose engines allow node 20
PRISM_VERSION=5.14.2       # newest @stoplight/prism-cli whose engines allow node 20
SQLPARSER_VERSION=5.4.0    # node-sql-parser: third-party BigQuery/Snowflake parser for the sqlviews tests

TOOLS=${SGLOAD_TOOLS:-$HOME/.cache/sgload-tools}
EMU_DIR=${EMU_DIR:-/tmp/sgload-emu}
S3_PORT=${S3_PORT:-7070} GCS_PORT=${GCS_PORT:-4443} AZ_PORT=${AZ_PORT:-10000} PRISM_PORT=${PRISM_PORT:-4010}
PRISM_SPECS=${PRISM_SPECS:-}   # space-separated OpenAPI files; one Prism per file, ports counting up
S3_KEY=sgloadtest S3_SECRET=sgloadtest-secret
# Azurite's published development account key (not a secret).
AZ_KEY='Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=='

log() { echo "emulators: $*" >&2; }

install_go() { # name module version -> prints binary path
  local dir="$TOOLS/go/$1-$3"
  if [ ! -x "$dir/$1" ]; then
    log "go install $2@$3"
    GOFLAGS=-buildvcs=false GOBIN="$dir" go install "$2@$3" >&2
  fi
  echo "$dir/$1"
}

install_npm() { # package version -> prints install dir
  local dir="$TOOLS/npm/${1//\//_}-$2"
  if [ ! -d "$dir/node_modules" ]; then
    log "npm install $1@$2"
    mkdir -p "$dir.tmp"
    npm install --prefix "$dir.tmp" --no-audit --no-fund --loglevel=error "$1@$2" >&2
    rm -rf "$dir" && mv "$dir.tmp" "$dir"
  fi
  echo "$dir"
}

install_all() {
  mkdir -p "$TOOLS"
  # npm installs are network-bound: run them beside the CPU-bound go builds.
  local npm_log="$EMU_DIR/npm-install.log"
  mkdir -p "$EMU_DIR"
  ( install_npm azurite "$AZURITE_VERSION" && install_npm @stoplight/prism-cli "$PRISM_VERSION" &&
    install_npm node-sql-parser "$SQLPARSER_VERSION" ) >/dev/null 2>"$npm_log" &
  local npm_pid=$!
  install_go versitygw github.com/versity/versitygw/cmd/versitygw "$VERSITYGW_VERSION" >/dev/null
  install_go fake-gcs-server github.com/fsouza/fake-gcs-server "$FAKE_GCS_VERSION" >/dev/null
  wait "$npm_pid" || { cat "$npm_log" >&2; return 1; }
}

start() { # name cmd... ; stdio to a log, PID to a file
  local name=$1; shift
  "$@" </dev/null >"$EMU_DIR/$name.log" 2>&1 &
  echo $! >"$EMU_DIR/$name.pid"
}

wait_http() { # name url code-regex [timeout-s]
  local name=$1 url=$2 want=$3 limit=${4:-60} code i
  for ((i = 0; i < limit * 10; i++)); do
    code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$url" || true)
    if [[ $code =~ $want ]]; then log "$name ready after ~$((i / 10))s"; return 0; fi
    if ! kill -0 "$(cat "$EMU_DIR/$name.pid")" 2>/dev/null; then
      log "$name exited:"; cat "$EMU_DIR/$name.log" >&2; return 1
    fi
    sleep 0.1
  done
  log "$name not ready after ${limit}s:"; tail -20 "$EMU_DIR/$name.log" >&2; return 1
}

up() {
  down >/dev/null 2>&1 || true
  install_all
  local vgw gcs azurite prism sqlparser
  vgw=$(install_go versitygw github.com/versity/versitygw/cmd/versitygw "$VERSITYGW_VERSION")
  gcs=$(install_go fake-gcs-server github.com/fsouza/fake-gcs-server "$FAKE_GCS_VERSION")
  azurite=$(install_npm azurite "$AZURITE_VERSION")
  prism=$(install_npm @stoplight/prism-cli "$PRISM_VERSION")
  sqlparser=$(install_npm node-sql-parser "$SQLPARSER_VERSION")

  rm -rf "$EMU_DIR/s3-data" "$EMU_DIR/s3-iam" && mkdir -p "$EMU_DIR/s3-data" "$EMU_DIR/s3-iam"
  start s3 env ROOT_ACCESS_KEY_ID=$S3_KEY ROOT_SECRET_ACCESS_KEY=$S3_SECRET \
    "$vgw" --port "127.0.0.1:$S3_PORT" --health /health --iam-dir "$EMU_DIR/s3-iam" posix "$EMU_DIR/s3-data"
  start gcs "$gcs" -scheme http -host 127.0.0.1 -port "$GCS_PORT" -backend memory \
    -public-host "127.0.0.1:$GCS_PORT" -external-url "http://127.0.0.1:$GCS_PORT" -log-level warn
  start azure "$azurite/node_modules/.bin/azurite-blob" --blobHost 127.0.0.1 --blobPort "$AZ_PORT" \
    --inMemoryPersistence --extentMemoryLimit 1024 --disableTelemetry --skipApiVersionCheck --loose --silent
  local spec port=$PRISM_PORT n=0 prism_urls=""
  for spec in $PRISM_SPECS; do
    start "prism$n" "$prism/node_modules/.bin/prism" mock -h 127.0.0.1 -p "$port" "$spec"
    prism_urls+="$(basename "$spec")=http://127.0.0.1:$port "
    n=$((n + 1)); port=$((port + 1))
  done

  wait_http s3 "http://127.0.0.1:$S3_PORT/health" '^200$'
  wait_http gcs "http://127.0.0.1:$GCS_PORT/_internal/healthcheck" '^200$'
  wait_http azure "http://127.0.0.1:$AZ_PORT/devstoreaccount1?comp=list" '^[1-5]'  # 403 unsigned = up
  port=$PRISM_PORT
  for ((i = 0; i < n; i++)); do
    wait_http "prism$i" "http://127.0.0.1:$port/" '^[1-5]' 120   # 404 = up
    port=$((port + 1))
  done

  cat >"$EMU_DIR/env" <<ENV
export AWS_ACCESS_KEY_ID=$S3_KEY AWS_SECRET_ACCESS_KEY=$S3_SECRET AWS_REGION=us-east-1 AWS_EC2_METADATA_DISABLED=true
export STORAGE_EMULATOR_HOST=127.0.0.1:$GCS_PORT
export AZURE_STORAGE_ACCOUNT=devstoreaccount1 AZURE_STORAGE_KEY='$AZ_KEY'
export SGLOAD_TEST_S3_ENDPOINT=http://127.0.0.1:$S3_PORT
export SGLOAD_TEST_VERSITYGW=$vgw
export SGLOAD_TEST_NODE_PATH=$sqlparser/node_modules
export SGLOAD_TEST_GCS_ENDPOINT=127.0.0.1:$GCS_PORT
export SGLOAD_TEST_AZURE_ENDPOINT=127.0.0.1:$AZ_PORT
export SGLOAD_TEST_PRISM='${prism_urls% }'
ENV
  log "all up; source $EMU_DIR/env"
}

down() {
  local f pid pids=()
  for f in "$EMU_DIR"/*.pid; do
    [ -f "$f" ] || continue
    pid=$(cat "$f"); rm -f "$f"
    kill "$pid" 2>/dev/null && pids+=("$pid") || true
  done
  for pid in "${pids[@]}"; do  # give each 10 s to exit, then force
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  done
  rm -rf "$EMU_DIR/s3-data" "$EMU_DIR/s3-iam"
  log "down"
}

case ${1:-} in
  up) up ;;
  down) down ;;
  install) install_all ;;
  *) echo "usage: $0 up|down|install" >&2; exit 2 ;;
esac
