# pgherd — see README.md. Every target works on a fresh Debian 12 machine
# once `make deps` (or .ci/run) has installed what the tests need.

GO      ?= go
BIN     := bin/pgherd
LAB     ?= pgherd-lab
LABDIR  ?= $(HOME)/.cache/pgherd/lab/$(LAB)
export PATH := /usr/local/go/bin:$(PATH)

.PHONY: all build test e2e-extended unit e2e chaos demo demo-down bench bench-backup lint deps docs clean

all: build

# A static binary: pgherd uploads itself to the hosts as their agent.
build:
	CGO_ENABLED=0 $(GO) build -o $(BIN) ./cmd/pgherd

# The lab suites of day-2 procedures, migration, the major upgrade and the short chaos soak
# each bring up a lab of their own: they run one after another, after the
# rest, so that no two HA clusters share the machine's cores.
LAB_SUITES := ./e2e/day2 ./e2e/migrate ./e2e/major ./e2e/chaos
CORE    = $(shell $(GO) list ./... | grep -v -e /e2e/chaos -e /e2e/day2 -e /e2e/migrate -e /e2e/major)

## test: everything — unit, integration (real sshd, PostgreSQL, etcd), the lab e2e suite,
## the day-2 and migration scenarios and a short chaos soak.
test: lint
	PGHERD_E2E=1 $(GO) test -count=1 -p 2 -timeout 25m $(CORE)
	PGHERD_E2E=1 $(GO) test -count=1 -p 1 -timeout 40m $(LAB_SUITES)

## e2e-extended: only the day-2, migration, major-upgrade and short chaos suites.
e2e-extended:
	PGHERD_E2E=1 $(GO) test -count=1 -p 1 -timeout 40m -v $(LAB_SUITES)

## unit: the tests that need no lab (still real sshd, PostgreSQL and etcd processes).
unit:
	$(GO) test -p 2 -timeout 15m ./...

## e2e: only the lab scenarios.
e2e:
	PGHERD_E2E=1 $(GO) test -p 1 -timeout 25m -v ./e2e/...

## chaos: the chaos soak (docs/chaos.md): DURATION of random faults (default 10m) from SEED
## (default 1) under a write load; its report replaces the chaos section of bench/RESULTS.md.
DURATION ?= 10m
SEED     ?= 1
chaos:
	PGHERD_E2E=1 PGHERD_CHAOS_DURATION=$(DURATION) PGHERD_CHAOS_SEED=$(SEED) \
	PGHERD_CHAOS_OUT=$(CURDIR)/bin/chaos PGHERD_CHAOS_RESULTS=$(CURDIR)/bench/RESULTS.md \
	$(GO) test -p 1 -count=1 -timeout 90m -v -run TestChaos ./e2e/chaos

## demo: a 4-host lab, and an HA cluster converged on it (examples/ha):
## PostgreSQL 15, etcd and the agent on node1..3, HAProxy and keepalived on
## node1 and node2, the VIP 10.77.0.100 (5000 read-write, 5001 read-only),
## the backup repository on node4 (SFTP).
demo: build
	$(BIN) lab up --name $(LAB) --hosts 4
	$(BIN) apply -auto-approve examples/ha $(LABDIR)/lab.hcl
	$(BIN) plan -detailed-exitcode examples/ha $(LABDIR)/lab.hcl
	@echo
	@echo "The cluster is up. Try: PGPASSWORD=lab-app-pw psql -h 10.77.0.100 -p 5000 -U app app"

demo-down: build
	$(BIN) lab down --name $(LAB)

## bench: the lab benchmarks of bench/ (about an hour; SUITES=ha,day2 picks some), written to bench/RESULTS.md.
BENCH_SUITES := converge,cluster,ha,day2,migrate,major
bench: build
	$(GO) run ./bench -suites $(or $(SUITES),$(BENCH_SUITES)) -out bench/RESULTS.md

## bench-backup: full/incremental backup and restore vs pgBackRest and pg_basebackup (needs root, PostgreSQL 15, pgbackrest; BACKUP_GB=4).
bench-backup:
	$(GO) run ./bench -suites backup -backup-gb $(or $(BACKUP_GB),4) -out bench/RESULTS.md

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
