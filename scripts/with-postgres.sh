#!/usr/bin/env bash
# Runs a command with a throwaway PostgreSQL server for the registry sink's tests:
#
#   scripts/with-postgres.sh cargo nextest run --workspace
#
# Installs Debian's `postgresql` package when no server binaries are found, creates a cluster in a
# temporary directory (as the `postgres` user when run as root: the server refuses to run as
# root), starts it on a free port of 127.0.0.1, exports
# ENTRA_OPERATOR_TEST_DATABASE_URL=postgres://entra@127.0.0.1:<port>/postgres for the command, and
# stops the server and removes the directory when the command ends (also on failure or Ctrl-C).
# The command's exit status is the script's.
set -euo pipefail

if [ "$#" -eq 0 ]; then
  echo "usage: $0 COMMAND [ARGS...]" >&2
  exit 2
fi

find_bin() {
  ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1
}

bin="$(find_bin)"
if [ -z "$bin" ] || [ ! -x "$bin/initdb" ]; then
  echo "== installing PostgreSQL (Debian package postgresql)" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq postgresql >/dev/null
  bin="$(find_bin)"
fi

dir="$(mktemp -d /tmp/entra-operator-pg.XXXXXX)"
chmod 755 "$dir"

# As root, run the server as the `postgres` user (the package creates it).
if [ "$(id -u)" -eq 0 ]; then
  id postgres >/dev/null 2>&1 || useradd --system --no-create-home postgres
  chown postgres "$dir"
  as_pg() { su postgres -s /bin/sh -c "$(printf '%q ' "$@")"; }
else
  as_pg() { "$@"; }
fi

cleanup() {
  as_pg "$bin/pg_ctl" -D "$dir/data" -m immediate stop >/dev/null 2>&1 || true
  rm -rf "$dir"
}
trap cleanup EXIT INT TERM

as_pg "$bin/initdb" -D "$dir/data" -U entra -A trust --no-sync -E UTF8 >"$dir/initdb.log" 2>&1 || {
  cat "$dir/initdb.log" >&2
  exit 1
}

started=""
for _ in 1 2 3 4 5 6 7 8 9 10; do
  port=$(( 20000 + RANDOM % 20000 ))
  # Free port? (a refused connection means nobody listens)
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    continue
  fi
  if as_pg "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 30 \
    -o "-h 127.0.0.1 -p $port -k $dir -c fsync=off -c max_connections=200" start >/dev/null; then
    started=1
    break
  fi
done
if [ -z "$started" ]; then
  echo "could not start PostgreSQL; server log:" >&2
  cat "$dir/server.log" >&2 || true
  exit 1
fi

export ENTRA_OPERATOR_TEST_DATABASE_URL="postgres://entra@127.0.0.1:$port/postgres"
echo "== PostgreSQL $("$bin/postgres" --version | awk '{print $3}') on 127.0.0.1:$port (ENTRA_OPERATOR_TEST_DATABASE_URL)" >&2

set +e
"$@"
status=$?
set -e
exit "$status"
