# pgcertgate — see README.md.
GO        ?= go
BIN       := bin/pgcertgate
PKGS      := ./...
FUZZTIME  ?= 30s
# Every fuzz target, as package:Target.
FUZZ_TARGETS := \
	./hba:FuzzTokenize ./hba:FuzzParse \
	./identmap:FuzzParse ./internal/are:FuzzTranslateRegex \
	./certauth:FuzzFormatDN \
	./pgwire:FuzzStartup ./pgwire:FuzzFrameScanner ./pgwire:FuzzRefuseForgedIdentity

.PHONY: all build test unit integration vet deps demo fuzz soak bench bench-deps clean

all: build

build:
	$(GO) build -o $(BIN) ./cmd/pgcertgate

# deps installs what the tests need when it is missing (idempotent: with
# everything present it runs no apt-get and no npm). As root it installs
# Debian's PostgreSQL server and client, and the client matrix's drivers:
# Java and pgjdbc, psycopg 3 (for /usr/bin/python3), Node.js; then the
# pinned node-postgres into integration/testdata/clients/node.
NODE_CLIENT := integration/testdata/clients/node
deps:
	@missing=""; \
	if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && ! command -v initdb >/dev/null 2>&1; then missing="$$missing postgresql"; fi; \
	command -v psql >/dev/null 2>&1 || missing="$$missing postgresql-client"; \
	command -v openssl >/dev/null 2>&1 || missing="$$missing openssl"; \
	{ command -v java >/dev/null 2>&1 && command -v javac >/dev/null 2>&1; } || missing="$$missing default-jdk-headless"; \
	[ -f /usr/share/java/postgresql.jar ] || missing="$$missing libpostgresql-jdbc-java"; \
	/usr/bin/python3 -c 'import psycopg' >/dev/null 2>&1 || missing="$$missing python3-psycopg"; \
	command -v node >/dev/null 2>&1 || missing="$$missing nodejs"; \
	command -v npm >/dev/null 2>&1 || missing="$$missing npm"; \
	if [ -n "$$missing" ]; then \
		if [ "$$(id -u)" = 0 ]; then \
			echo "installing:$$missing"; \
			apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $$missing; \
		else \
			echo "missing Debian packages:$$missing (as root: make deps)" >&2; exit 1; \
		fi; \
	fi
	@# npm ci only when node_modules is older than the lock file.
	@if [ ! -f $(NODE_CLIENT)/node_modules/.package-lock.json ] || [ $(NODE_CLIENT)/package-lock.json -nt $(NODE_CLIENT)/node_modules/.package-lock.json ]; then \
		cd $(NODE_CLIENT) && npm ci --no-audit --no-fund; \
	fi
	$(GO) mod download

vet:
	$(GO) vet $(PKGS)
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

# test runs every test (unit, golden, fuzz corpora, and integration against
# a real PostgreSQL) under the race detector.
test: vet
	$(GO) test -race -count=1 -timeout 30m $(PKGS)

unit:
	$(GO) test -race -count=1 $$($(GO) list ./... | grep -v /integration)

integration:
	$(GO) test -race -count=1 -v ./integration/

# demo builds pgcertgate and runs it end to end: throwaway CA and
# certificates, a temporary PostgreSQL, the proxy, and the psql line to
# connect. Ctrl-C stops it and cleans up.
demo: build
	./$(BIN) demo

# soak runs the load and leak tests at full size (1,000 slow clients,
# 20,000 connect/disconnect cycles); make test runs them reduced.
soak:
	SOAK_FULL=1 $(GO) test -race -count=1 -timeout 90m -v -run 'TestSlowClients|TestResourceStability' ./integration/

# fuzz runs every fuzz target for FUZZTIME each (make fuzz FUZZTIME=10m).
fuzz:
	@set -e; for t in $(FUZZ_TARGETS); do \
		pkg=$${t%%:*}; name=$${t##*:}; \
		echo "== $$pkg $$name ($(FUZZTIME))"; \
		$(GO) test -run '^$$' -fuzz "^$$name\$$" -fuzztime $(FUZZTIME) $$pkg; \
	done

# bench-deps installs what make bench needs beyond make deps (idempotent):
# Debian's PgBouncer (the comparison target) and gnuplot-nox (the plot).
# make test never needs them.
bench-deps:
	@if ! command -v pgbouncer >/dev/null 2>&1 && [ ! -x /usr/sbin/pgbouncer ] || ! command -v gnuplot >/dev/null 2>&1; then \
		if [ "$$(id -u)" = 0 ]; then \
			apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends pgbouncer gnuplot-nox; \
		else \
			echo "missing pgbouncer or gnuplot: install pgbouncer and gnuplot-nox (as root: make bench-deps)" >&2; exit 1; \
		fi; \
	fi

# bench compares pgcertgate with direct PostgreSQL and PgBouncer (issue 7)
# and rewrites BENCHMARKS.md and bench/tps.png. It first waits (up to 45
# minutes) for a quiet machine, then takes about 20 minutes. BENCHFLAGS
# passes flags, e.g. make bench BENCHFLAGS='-T 3 -rounds 1 -quiet-wait 0'.
BENCHFLAGS ?=
bench: build bench-deps
	$(GO) run ./bench/cmd/pgbench-compare -bin $(BIN) $(BENCHFLAGS)

clean:
	rm -rf bin
