#!/usr/bin/env bash
# A PostgreSQL server for the tests (and for trying a shared Optuna study by hand), from
# Debian's package: a fresh cluster in a temporary folder, listening on 127.0.0.1 only on a free
# port, run as an unprivileged user (postgres when started by root, else yourself), with a
# database `netlab` for the studies and a generated password.
#
#   tests/services/postgres.sh start DIR   # prints export NETLAB_OPTUNA_STORAGE=postgresql://...
#   tests/services/postgres.sh stop DIR    # stops the server it started, checks none is left, removes its files
#
# DIR keeps the record (the storage URL in DIR/storage.url, where the cluster lives); the
# cluster's own files go to a folder of their own under ${TMPDIR:-/tmp}, which the server's
# user can reach whatever DIR's permissions. Needs Debian's postgresql (initdb, pg_ctl, psql):
#   apt-get install postgresql
set -euo pipefail

usage() { echo "usage: $0 start|stop DIR" >&2; exit 2; }
[ $# -eq 2 ] || usage
action=$1
dir=$(mkdir -p "$2" && cd "$2" && pwd)
for bin in /usr/lib/postgresql/*/bin; do [ -d "$bin" ] && PATH="$PATH:$bin"; done

need() {
  for c in "$@"; do
    command -v "$c" > /dev/null 2>&1 || {
      echo "postgres.sh: $c not found: install Debian's PostgreSQL (apt-get install postgresql)" >&2; exit 3; }
  done
}
if [ "$(id -u)" = 0 ]; then
  user=postgres
  as_user() { runuser -u "$user" -- env PATH="$PATH" "$@"; }
else
  user=$(id -un)
  as_user() { "$@"; }
fi
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
alive() { [ -n "$1" ] && [ -r "/proc/$1/cmdline" ] && [ -n "$(tr -d '\0' < "/proc/$1/cmdline" 2> /dev/null)" ]; }

start() {
  need initdb pg_ctl psql
  if [ -s "$dir/cluster.path" ]; then echo "postgres.sh: $dir already has a server; stop it first" >&2; exit 1; fi
  local data port password
  data=$(mktemp -d "${TMPDIR:-/tmp}/netlab-postgres.XXXXXX")
  echo "$data" > "$dir/cluster.path"
  chmod 700 "$data"
  password=$(python3 -c 'import secrets; print(secrets.token_hex(16))')
  echo "$password" > "$data/password"
  [ "$user" = "$(id -un)" ] || chown -R "$user" "$data"
  as_user initdb --pgdata="$data/db" --username=netlab --pwfile="$data/password" --auth-local=trust \
    --auth-host=scram-sha-256 --encoding=UTF8 --no-instructions > "$data/initdb.log" 2>&1 \
    || { cat "$data/initdb.log" >&2; exit 1; }
  port=$(free_port)
  if ! as_user pg_ctl --pgdata="$data/db" --log="$data/postgres.log" --wait --timeout=60 \
       -o "-c listen_addresses=127.0.0.1 -c port=$port -c unix_socket_directories=$data" start > /dev/null; then
    tail -n 20 "$data/postgres.log" >&2; stop || true; exit 1
  fi
  as_user psql --quiet --host="$data" --port="$port" --username=netlab --dbname=postgres \
    --command="CREATE DATABASE netlab" > /dev/null
  local url="postgresql://netlab:$password@127.0.0.1:$port/netlab"
  echo "$url" > "$dir/storage.url"
  echo "export NETLAB_OPTUNA_STORAGE=$url"
}

stop() {
  [ -s "$dir/cluster.path" ] || return 0
  local data pid left=""
  data=$(cat "$dir/cluster.path")
  pid=$( [ -s "$data/db/postmaster.pid" ] && head -n 1 "$data/db/postmaster.pid" || true)
  if [ -d "$data/db" ]; then
    as_user pg_ctl --pgdata="$data/db" --mode=fast --wait --timeout=60 stop > /dev/null 2>&1 || true
  fi
  if alive "$pid"; then kill -KILL "$pid" 2> /dev/null || true; sleep 0.5; fi
  alive "$pid" && left="postmaster($pid)"
  # and none of its processes (their parent was the postmaster)
  for p in /proc/[0-9]*; do
    if [ -n "$pid" ] && [ "$(awk '{print $4}' "$p/stat" 2> /dev/null)" = "$pid" ] && alive "${p#/proc/}"; then
      left="$left postgres-child(${p#/proc/})"
    fi
  done
  if [ -n "$left" ]; then echo "postgres.sh: still running after stop: $left" >&2; return 1; fi
  rm -rf "$data" "$dir/cluster.path" "$dir/storage.url"
}

case "$action" in
  start) start ;;
  stop) stop ;;
  *) usage ;;
esac
