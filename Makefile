# atomic-deploy developer tasks. Every target works on a fresh Debian 12 or
# Ubuntu 24.04 machine with Go installed; `make test` installs the rest (as root).

GO  ?= go
BIN ?= bin/atomic-deploy
# The release tag at HEAD, if any; without one the binary says "dev" plus
# the commit it was built from (atomic-deploy --version).
VERSION ?= $(shell git describe --tags --exact-match --match 'v[0-9]*' 2>/dev/null)
LDFLAGS := -s -w -X github.com/atomic-deploy/atomic-deploy/internal/version.Version=$(VERSION)

.PHONY: all build test demo lint bench generate clean help

all: build

help:
	@echo "make build     static binary in $(BIN)"
	@echo "make test      install test dependencies (apt, once), go vet, go test ./... with real servers"
	@echo "make demo      deploy examples/hello twice to ./.demo/site and show the layout"
	@echo "make lint      gofmt, go vet, actionlint, shellcheck"
	@echo "make generate  rewrite action.yml / README.md tables from internal/config/inputs.go"
	@echo "make bench     run bench/run.sh"

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "$(LDFLAGS)" -o $(BIN) .

test:
	scripts/test.sh

demo:
	BIN=$(BIN) scripts/demo.sh

lint:
	scripts/lint.sh

generate:
	$(GO) run ./internal/actionspec/gen

bench:
	@if [ -x bench/run.sh ]; then bench/run.sh; \
	elif [ -f bench/run.sh ]; then bash bench/run.sh; \
	else echo "bench/run.sh does not exist yet"; exit 1; fi

clean:
	rm -rf bin .demo
