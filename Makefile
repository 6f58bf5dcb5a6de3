# sgload: the two commands a newcomer needs are `make run` and `make test`.
GO       ?= go
BIN      ?= bin
SPOOL    ?= var/spool
ADDR     ?= 127.0.0.1:8080
FUZZTIME ?= 10s

.PHONY: all build run test lint unit fuzz bench-ingest tidy clean

all: build

build:
	$(GO) build -o $(BIN)/sgload ./cmd/sgload

# Runs serve on embedded defaults: a local spool under var/, loopback only,
# no authentication (it says so loudly). See README.md for a curl to try it.
run: build
	$(BIN)/sgload serve --spool $(SPOOL) --addr $(ADDR) --insecure-no-auth --min-free-bytes 64MiB

# Everything CI runs: lint, the test suite with the race detector against
# real storage servers and the SendGrid API mock, then short fuzz runs.
test:
	scripts/test.sh

lint:
	scripts/test.sh lint

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

tidy:
	$(GO) mod tidy

clean:
	rm -rf $(BIN) var
