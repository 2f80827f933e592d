#!/usr/bin/env bash
# Starts Debian's PostgreSQL 15 cluster (15/main) for the PostgreSQL store tests, makes sure
# the role crowdbake (password crowdbake, CREATEDB) exists, and prints on stdout one line:
#   export CROWDBAKE_TEST_POSTGRES=postgres://crowdbake:crowdbake@127.0.0.1:PORT/postgres
# Everything else goes to stderr, so `eval "$(bash scripts/start-postgres.sh)"` works.
# Idempotent: a running cluster and an existing role are left as they are. Installs nothing
# (`apt-get install postgresql` does that; no systemd needed). Run as root.
#
# The fault tests that partition a master (test/fault-partition.test.ts) put it in a network
# namespace of its own, joined to this one by a veth pair from 10.213.0.0/16: it reaches the
# server at 10.213.254.1, an address on the loopback device (always there, so the server can
# listen on it from its start; nothing outside this machine is routed to it). The server
# listens on localhost and that address (conf.d/crowdbake.conf), pg_hba lets the role in from
# the veth subnet with a password (scram-sha-256), and a running server that does not listen
# there yet is restarted once.
set -euo pipefail

VERSION=15
CLUSTER=main
ROLE=crowdbake
PASSWORD=crowdbake
FARM_ADDRESS=10.213.254.1
FARM_SUBNET=10.213.0.0/16
CONF_DIR=/etc/postgresql/$VERSION/$CLUSTER
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

# The namespaces' way in: the address on lo, the listen address, the pg_hba line.
FARM_OK=0
if command -v ip >/dev/null; then
  if ! ip -4 addr show dev lo | grep -q "inet $FARM_ADDRESS/"; then
    say "adding $FARM_ADDRESS/32 to lo (the address network namespaces of the fault tests reach PostgreSQL at)"
    ip addr add "$FARM_ADDRESS/32" dev lo || say "cannot add it (no CAP_NET_ADMIN here?): the partition tests cannot reach PostgreSQL"
  fi
  ip -4 addr show dev lo | grep -q "inet $FARM_ADDRESS/" && FARM_OK=1
else
  say "no ip command (apt-get install iproute2): PostgreSQL listens on localhost only and the partition tests cannot run"
fi
LISTEN_CONF="listen_addresses = 'localhost, $FARM_ADDRESS'   # written by scripts/start-postgres.sh"
if [ ! -f "$CONF_DIR/conf.d/crowdbake.conf" ] || [ "$(cat "$CONF_DIR/conf.d/crowdbake.conf")" != "$LISTEN_CONF" ]; then
  say "listening on localhost and $FARM_ADDRESS ($CONF_DIR/conf.d/crowdbake.conf)"
  install -d -o postgres -g postgres "$CONF_DIR/conf.d"
  echo "$LISTEN_CONF" > "$CONF_DIR/conf.d/crowdbake.conf"
  chown postgres:postgres "$CONF_DIR/conf.d/crowdbake.conf"
fi
HBA_LINE="host    all             $ROLE       $FARM_SUBNET          scram-sha-256"
HBA_CHANGED=0
if ! grep -qF "$HBA_LINE" "$CONF_DIR/pg_hba.conf"; then
  say "letting $ROLE in from $FARM_SUBNET with a password ($CONF_DIR/pg_hba.conf)"
  printf '# The network namespaces of the fault tests (scripts/start-postgres.sh)\n%s\n' "$HBA_LINE" >> "$CONF_DIR/pg_hba.conf"
  HBA_CHANGED=1
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
  if [ "$FARM_OK" = 1 ] && ! pg_isready -q -h "$FARM_ADDRESS" -p "$PORT" -t 2; then
    # listen_addresses takes effect only at a start; a restart drops open connections.
    say "restarting cluster $VERSION/$CLUSTER so that it listens on $FARM_ADDRESS too"
    pg_ctlcluster "$VERSION" "$CLUSTER" restart >&2
  elif [ "$HBA_CHANGED" = 1 ]; then
    pg_ctlcluster "$VERSION" "$CLUSTER" reload >&2
  fi
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
if [ "$FARM_OK" = 1 ] && ! PGPASSWORD=$PASSWORD psql -X -q -h "$FARM_ADDRESS" -p "$PORT" -U "$ROLE" -d postgres -c 'SELECT 1' >/dev/null; then
  say "the role $ROLE cannot log in over TCP on $FARM_ADDRESS:$PORT (the partition tests' way in); check $CONF_DIR/conf.d/crowdbake.conf and pg_hba.conf"
  exit 1
fi
say "ready: $URL"
echo "export CROWDBAKE_TEST_POSTGRES=$URL"
