# pgcertgate — see README.md.
GO        ?= go
BIN       := bin/pgcertgate
PKGS      := ./...
FUZZTIME  ?= 30s
# Every fuzz target, as package:Target.
FUZZ_TARGETS := \
	./internal/authfile:FuzzTokenize ./hba:FuzzParse \
	./identmap:FuzzParse ./internal/are:FuzzTranslateRegex ./internal/are:FuzzGroup1Linear \
	./certauth:FuzzFormatDN ./certauth:FuzzOCSPResponse ./certauth:FuzzParseCRL \
	./pgwire:FuzzStartup ./pgwire:FuzzFrameScanner ./pgwire:FuzzRefuseForgedIdentity ./pgwire:FuzzAlertRecord ./pgwire:FuzzProxyHeader

.PHONY: all build test unit integration vet deps demo-deps demo fuzz soak bench bench-deps clean

all: build

build:
	$(GO) build -o $(BIN) ./cmd/pgcertgate

# deps brings in what make test needs, demo-deps what make demo needs
# (scripts/deps.sh). Both are idempotent and silent when everything is
# present: no apt-get, no npm, no network. As root they install the
# missing Debian packages; as anyone else they name them, with the command
# that installs them, and stop. deps then installs the pinned node-postgres
# into integration/testdata/clients/node when its lock file is newer.
NODE_CLIENT := integration/testdata/clients/node
deps:
	@./scripts/deps.sh test
	@if [ ! -f $(NODE_CLIENT)/node_modules/.package-lock.json ] || [ $(NODE_CLIENT)/package-lock.json -nt $(NODE_CLIENT)/node_modules/.package-lock.json ]; then \
		echo "npm ci in $(NODE_CLIENT)"; \
		cd $(NODE_CLIENT) && npm ci --no-audit --no-fund --loglevel=error >/dev/null; \
	fi
	@$(GO) mod download

demo-deps:
	@./scripts/deps.sh demo
	@$(GO) mod download

vet:
	$(GO) vet $(PKGS)
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

# test runs every test (unit, golden, fuzz corpora, and integration against
# a real PostgreSQL) under the race detector.
test: deps vet
	$(GO) test -race -count=1 -timeout 30m $(PKGS)

unit:
	$(GO) test -race -count=1 $$($(GO) list ./... | grep -v /integration)

integration: deps
	$(GO) test -race -count=1 -v ./integration/

# demo builds pgcertgate and runs it end to end: throwaway CA and
# certificates, a temporary PostgreSQL, the proxy, and the psql line to
# connect. Ctrl-C stops it and cleans up.
demo: demo-deps build
	./$(BIN) demo

# soak runs the load and leak tests at full size (1,000 slow clients,
# 20,000 connect/disconnect cycles; on each relay engine, 1,000 echoing
# sessions for 10 minutes, 1 GiB each way through TLS, 5,000 sessions
# started and ended at random); make test runs them reduced.
soak: deps
	SOAK_FULL=1 $(GO) test -race -count=1 -timeout 90m -v -run 'TestSlowClients|TestResourceStability' ./integration/
	SOAK_FULL=1 $(GO) test -race -count=1 -timeout 90m -v -run 'TestRelaySoak|TestRelayLargeMessages|TestRelayChurn' ./pgwire/

# fuzz runs every fuzz target for FUZZTIME each (make fuzz FUZZTIME=10m).
fuzz:
	@set -e; for t in $(FUZZ_TARGETS); do \
		pkg=$${t%%:*}; name=$${t##*:}; \
		echo "== $$pkg $$name ($(FUZZTIME))"; \
		$(GO) test -run '^$$' -fuzz "^$$name\$$" -fuzztime $(FUZZTIME) $$pkg; \
	done

# bench-deps installs what make bench needs beyond make deps: Debian's
# PgBouncer (the comparison target), gnuplot-nox (the plot),
# postgresql-contrib (pg_stat_statements, for the identity ledger's
# breakdown) and openssl (the OCSP responder of pgcertgate+ocsp). make test
# never needs them.
bench-deps: deps
	@./scripts/deps.sh bench

# bench compares pgcertgate with direct PostgreSQL and PgBouncer, to show
# what the proxy costs and whether it meets its throughput and memory
# targets, and rewrites BENCHMARKS.md and bench/tps.png. It first waits
# (up to 45 minutes) for a quiet machine, then takes about 35 minutes.
# BENCHFLAGS passes flags, e.g.
# make bench BENCHFLAGS='-T 3 -rounds 1 -quiet-wait 0', or
# make bench BENCHFLAGS='-targets pgcertgate,pgcertgate+ledger -workloads C4'.
BENCHFLAGS ?=
bench: build bench-deps
	$(GO) build -o bin/relayfloor ./bench/cmd/relayfloor
	$(GO) run ./bench/cmd/pgbench-compare -bin $(BIN) -relayfloor bin/relayfloor $(BENCHFLAGS)

clean:
	rm -rf bin
