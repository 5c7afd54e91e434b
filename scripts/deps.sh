#!/bin/sh
# deps.sh GROUP... makes sure the Debian packages a make target needs are
# present. With everything present it prints nothing and touches nothing
# (no apt-get, no npm, no network). As root it installs what is missing;
# as anyone else it names the missing packages and the one command that
# installs them, and fails at once.
#
# Groups: demo (PostgreSQL server and client, openssl), test (demo plus the
# client matrix's drivers, file(1) and HAProxy), bench (PgBouncer, gnuplot,
# pg_stat_statements from postgresql-contrib, and openssl's OCSP responder).
set -eu

# probe PACKAGE: succeeds when what the project uses from PACKAGE is here.
probe() {
	case "$1" in
	postgresql) ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null 2>&1 ;;
	postgresql-contrib) ls /usr/share/postgresql/*/extension/dblink.control >/dev/null 2>&1 ;;
	postgresql-client) command -v psql >/dev/null 2>&1 ;;
	openssl) command -v openssl >/dev/null 2>&1 ;;
	file) command -v file >/dev/null 2>&1 ;;
	default-jdk-headless) command -v java >/dev/null 2>&1 && command -v javac >/dev/null 2>&1 ;;
	libpostgresql-jdbc-java) [ -f /usr/share/java/postgresql.jar ] ;;
	python3-psycopg) /usr/bin/python3 -c 'import psycopg' >/dev/null 2>&1 ;;
	nodejs) command -v node >/dev/null 2>&1 ;;
	npm) command -v npm >/dev/null 2>&1 ;;
	pgbouncer) command -v pgbouncer >/dev/null 2>&1 || [ -x /usr/sbin/pgbouncer ] ;;
	gnuplot-nox) command -v gnuplot >/dev/null 2>&1 ;;
	chromium) command -v chromium >/dev/null 2>&1 ;;
	haproxy) command -v haproxy >/dev/null 2>&1 || [ -x /usr/sbin/haproxy ] ;;
	*) echo "deps.sh: no probe for package $1" >&2; exit 2 ;;
	esac
}

pkgs=""
for group in "$@"; do
	case "$group" in
	demo) pkgs="$pkgs postgresql postgresql-client openssl" ;;
	test) pkgs="$pkgs postgresql postgresql-contrib postgresql-client openssl file default-jdk-headless libpostgresql-jdbc-java python3-psycopg nodejs npm haproxy chromium" ;;
	bench) pkgs="$pkgs pgbouncer gnuplot-nox postgresql-contrib openssl" ;;
	*) echo "deps.sh: unknown group $group (demo, test, bench)" >&2; exit 2 ;;
	esac
done

missing=""
for p in $pkgs; do
	case " $missing " in *" $p "*) continue ;; esac
	probe "$p" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0

install="apt-get update && apt-get install -y --no-install-recommends$missing"
if [ "$(id -u)" != 0 ]; then
	echo "missing Debian packages:$missing" >&2
	echo "install them as root with:  $install" >&2
	exit 1
fi
echo "installing Debian packages:$missing"
apt-get update -q >/dev/null
DEBIAN_FRONTEND=noninteractive DEBCONF_NOWARNINGS=yes apt-get install -y -q --no-install-recommends $missing >/dev/null
for p in $missing; do
	probe "$p" || { echo "deps.sh: $p installed, but still not usable" >&2; exit 1; }
done
