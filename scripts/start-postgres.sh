#!/usr/bin/env bash
# Starts Debian's PostgreSQL 15 cluster (15/main) for the PostgreSQL store tests, makes sure
# the role crowdbake (password crowdbake, CREATEDB) exists, and prints on stdout one line:
#   export CROWDBAKE_TEST_POSTGRES=postgres://crowdbake:crowdbake@127.0.0.1:PORT/postgres
# Everything else goes to stderr, so `eval "$(bash scripts/start-postgres.sh)"` works.
# Idempotent: a running cluster and an existing role are left as they are. Installs nothing
# (`apt-get install postgresql` does that; no systemd needed). Run as root.
set -euo pipefail

VERSION=15
CLUSTER=main
ROLE=crowdbake
PASSWORD=crowdbake
say() { echo "start-postgres: $*" >&2; }

if [ "$(id -u)" -ne 0 ]; then
  say "run as root (e.g. sudo bash $0): it starts the cluster and creates a role as the postgres user"
  exit 1
fi
if ! command -v pg_ctlcluster >/dev/null || [ ! -x "/usr/lib/postgresql/$VERSION/bin/postgres" ]; then
  say "PostgreSQL $VERSION is not installed; install it with: apt-get install -y postgresql"
  exit 1
fi

# A cluster is created when the package is installed; recreate it if someone removed it.
if ! pg_lsclusters -h | awk -v v="$VERSION" -v c="$CLUSTER" '$1 == v && $2 == c { found = 1 } END { exit !found }'; then
  say "creating cluster $VERSION/$CLUSTER"
  pg_createcluster "$VERSION" "$CLUSTER" >&2
fi

status() { pg_lsclusters -h | awk -v v="$VERSION" -v c="$CLUSTER" '$1 == v && $2 == c { print $4 }'; }
PORT=$(pg_lsclusters -h | awk -v v="$VERSION" -v c="$CLUSTER" '$1 == v && $2 == c { print $3 }')

if [ "$(status)" != online ]; then
  say "starting cluster $VERSION/$CLUSTER on port $PORT"
  # The socket directory lives under /run, which may be fresh after a reboot.
  install -d -o postgres -g postgres -m 2775 /var/run/postgresql
  if ! pg_ctlcluster "$VERSION" "$CLUSTER" start >&2; then
    say "the cluster did not start; the end of its log:"
    tail -n 20 "/var/log/postgresql/postgresql-$VERSION-$CLUSTER.log" >&2 || true
    exit 1
  fi
else
  say "cluster $VERSION/$CLUSTER already running on port $PORT"
fi

for _ in $(seq 1 100); do
  pg_isready -q -h /var/run/postgresql -p "$PORT" && break
  sleep 0.1
done
if ! pg_isready -q -h /var/run/postgresql -p "$PORT"; then
  say "the server on port $PORT does not accept connections"
  exit 1
fi

# The role the tests use: password login over TCP (pg_hba's default scram-sha-256 for
# 127.0.0.1), and CREATEDB so that each test file can create and drop its own database.
runuser -u postgres -- psql -X -q -v ON_ERROR_STOP=1 -p "$PORT" -d postgres >&2 <<SQL
DO \$\$
BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$ROLE') THEN
    CREATE ROLE $ROLE LOGIN CREATEDB PASSWORD '$PASSWORD';
  ELSE
    ALTER ROLE $ROLE LOGIN CREATEDB PASSWORD '$PASSWORD';
  END IF;
END
\$\$;
SQL

URL="postgres://$ROLE:$PASSWORD@127.0.0.1:$PORT/postgres"
if ! PGPASSWORD=$PASSWORD psql -X -q -h 127.0.0.1 -p "$PORT" -U "$ROLE" -d postgres -c 'SELECT 1' >/dev/null; then
  say "the role $ROLE cannot log in over TCP on 127.0.0.1:$PORT; check /etc/postgresql/$VERSION/$CLUSTER/pg_hba.conf"
  exit 1
fi
say "ready: $URL"
echo "export CROWDBAKE_TEST_POSTGRES=$URL"
