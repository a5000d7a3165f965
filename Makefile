# pgherd — see README.md. Every target works on a fresh Debian 12 machine
# once `make deps` (or .ci/run) has installed what the tests need.

GO      ?= go
BIN     := bin/pgherd
LAB     ?= pgherd-lab
LABDIR  ?= $(HOME)/.cache/pgherd/lab/$(LAB)
export PATH := /usr/local/go/bin:$(PATH)

.PHONY: all build test unit e2e demo demo-down bench lint deps docs clean

all: build

build:
	$(GO) build -o $(BIN) ./cmd/pgherd

## test: everything — unit, integration (real sshd, PostgreSQL, etcd) and the lab e2e suite.
test: lint
	PGHERD_E2E=1 $(GO) test -p 2 -timeout 28m ./...

## unit: the tests that need no lab (still real sshd, PostgreSQL and etcd processes).
unit:
	$(GO) test -p 2 -timeout 15m ./...

## e2e: only the lab scenarios.
e2e:
	PGHERD_E2E=1 $(GO) test -p 1 -timeout 25m -v ./e2e/...

## demo: a 3-host lab, and an HA cluster converged on it.
demo: build
	$(BIN) lab up --name $(LAB) --hosts 3
	$(BIN) apply -auto-approve examples/demo $(LABDIR)/lab.hcl
	$(BIN) plan -detailed-exitcode examples/demo $(LABDIR)/lab.hcl

demo-down: build
	$(BIN) lab down --name $(LAB)

## bench: the benchmarks of bench/, written to bench/RESULTS.md.
bench: build
	$(GO) run ./bench -out bench/RESULTS.md

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

## deps: the Debian packages the tests use (run as root).
deps:
	bash .ci/deps

docs:
	$(GO) run ./spec/cmd/gendoc > docs/spec.md

clean:
	rm -rf bin
