# sgload: the two commands a newcomer needs are `make run` and `make test`.
GO       ?= go
BIN      ?= bin
SPOOL    ?= var/spool
BUCKET   ?= var/bucket
ADDR     ?= 127.0.0.1:8080
FUZZTIME ?= 1m

VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT   ?= $(shell git rev-parse HEAD 2>/dev/null)
PLATFORMS ?= linux/amd64 linux/arm64 darwin/arm64
LDFLAGS  := -s -w -X main.version=$(VERSION) -X main.commit=$(COMMIT)

.PHONY: all build run test lint unit fuzz bench-ingest bench-hostile bench-flush bench-compact tidy clean release image deploy-check

all: build

build:
	$(GO) build -o $(BIN)/sgload ./cmd/sgload

# Static binaries (no cgo, no libc) for each of PLATFORMS, with the version
# and commit that sgload --version prints, and their SHA-256 sums.
release:
	@mkdir -p $(BIN)/release
	@set -e; for p in $(PLATFORMS); do \
		os=$${p%/*}; arch=$${p#*/}; out=$(BIN)/release/sgload-$(VERSION)-$$os-$$arch; \
		echo "build $$out"; \
		CGO_ENABLED=0 GOOS=$$os GOARCH=$$arch $(GO) build -trimpath -ldflags "$(LDFLAGS)" -o $$out ./cmd/sgload; \
	done
	cd $(BIN)/release && sha256sum sgload-$(VERSION)-* > SHA256SUMS

# The container image (Containerfile) with podman: sgload:$(VERSION).
image:
	VERSION=$(VERSION) COMMIT=$(COMMIT) scripts/image.sh build

# The main job on embedded defaults: serve on loopback without authentication
# (it says so loudly) into a spool under var/, flushed every 30 s as Parquet
# into the local folder var/bucket. See README.md for a curl to try it.
run: build
	$(BIN)/sgload run --spool $(SPOOL) --bucket $(BUCKET) --addr $(ADDR) --insecure-no-auth \
		--min-free-bytes 64MiB --segment-age 10s --flush-interval 30s

# Everything CI runs: lint, the test suite with the race detector against
# real storage servers and the SendGrid API mock, then short fuzz runs.
test:
	scripts/test.sh

lint:
	scripts/test.sh lint

# The release build, container image, systemd units, Kubernetes manifests
# and Airflow DAG, each checked with the real tool (part of make test).
deploy-check:
	scripts/test.sh deploy

unit:
	scripts/test.sh unit

fuzz:
	FUZZTIME=$(FUZZTIME) scripts/test.sh fuzz

# Ingest: serve under rising concurrency vs. the disk's own append+fsync rate.
bench-ingest: build
	$(GO) build -o $(BIN)/sgload-bench ./cmd/sgload-bench
	@mkdir -p var/bench
	@[ -s var/bench/events-100k.ndjson ] || python3 scripts/gen_events.py -n 100000 --seed 42 > var/bench/events-100k.ndjson
	$(BIN)/sgload-bench ingest -sgload $(BIN)/sgload -events var/bench/events-100k.ndjson -dir var/bench

# Serve under hostile traffic (500 slow senders, 200 forged 8 MB bodies)
# vs. the same signed POSTs at 50/s alone. HOSTILE_SGLOAD=path measures
# another build (BENCHMARKS.md has the release before). About a minute.
HOSTILE_SGLOAD ?= $(BIN)/sgload
bench-hostile: build
	$(GO) build -o $(BIN)/sgload-bench ./cmd/sgload-bench
	@mkdir -p var/bench
	$(BIN)/sgload-bench hostile -sgload $(HOSTILE_SGLOAD) -events testdata/events/sample-2000.ndjson -dir var/bench/hostile

# Flush vs. DuckDB's own NDJSON-to-Parquet COPY (typed only, and the same
# job in one pass) on the same ~2M events, alternating, medians of three; then
# flush with 10x the data (memory must not grow). BASELINE=path adds another
# sgload binary (the release before) to the rounds. Slow: 10-20 minutes.
BASELINE ?=
bench-flush: build
	$(GO) build -o $(BIN)/sgload-bench ./cmd/sgload-bench
	@mkdir -p var/bench
	@[ -s var/bench/events-2m.ndjson ] || python3 scripts/gen_events.py -n 2000000 --seed 42 > var/bench/events-2m.ndjson
	$(BIN)/sgload-bench flush -sgload $(BIN)/sgload -events var/bench/events-2m.ndjson -dir var/bench/flush -scale 10 \
		$(if $(BASELINE),-baseline $(BASELINE))

# Compaction vs. DuckDB's sorted merge on a day of events flushed as 288
# five-minute plans, and three typical queries before and after.
bench-compact: build
	$(GO) build -o $(BIN)/sgload-bench ./cmd/sgload-bench
	@mkdir -p var/bench
	@[ -s var/bench/events-day.ndjson ] || python3 scripts/gen_events.py -n 500000 --seed 42 --span-days 1 > var/bench/events-day.ndjson
	$(BIN)/sgload-bench compact -sgload $(BIN)/sgload -events var/bench/events-day.ndjson -dir var/bench/compact

tidy:
	$(GO) mod tidy

clean:
	rm -rf $(BIN) var
