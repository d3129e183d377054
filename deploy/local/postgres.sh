#!/usr/bin/env bash
# A project-owned PostgreSQL 15 cluster on 127.0.0.1, for development and tests.
#   deploy/local/postgres.sh start          initdb on first use, start (idempotent), wait until ready,
#                                           ensure role 'anomalyvae' and databases anomalyvae, anomalyvae_test
#   deploy/local/postgres.sh stop           stop this cluster (and nothing else)
#   deploy/local/postgres.sh status         exit 0 when running, 3 when stopped
#   deploy/local/postgres.sh psql [ARGS]    psql as anomalyvae to database anomalyvae (ARGS may override)
# Environment:
#   PG_PORT (5433)                         start uses it; other commands default to the running port
#   ANOMALYVAE_DATA (<repo>/.data)         cluster in $ANOMALYVAE_DATA/postgres/data, log postgres.log and
#                                          the unix socket next to it
#   PG_START_TIMEOUT (60)                  seconds to wait for readiness
# TLS: the server also accepts TLS connections (ssl=on) with a certificate for 127.0.0.1 and localhost, signed by a
# local CA that start generates with openssl on first use (in the cluster's tls/ directory; never committed). Its CA
# certificate is copied to $ANOMALYVAE_DATA/postgres-ca.crt for clients:
#   Host=127.0.0.1;Port=5433;Username=anomalyvae;Database=anomalyvae;SSL Mode=VerifyFull;Root Certificate=<that file>
# THIS IS A DEVELOPMENT CLUSTER: trust authentication (no passwords) for local and 127.0.0.1
# connections, listening on 127.0.0.1 only, role anomalyvae is a superuser, and fsync /
# synchronous_commit / full_page_writes are off (fast; an OS crash can lose or corrupt data).
# Connection string: Host=127.0.0.1;Port=5433;Username=anomalyvae;Database=anomalyvae
# PostgreSQL refuses to run as root: when run as root, the server runs as the 'postgres' system user
# (runuser) and owns the cluster directory. If that user cannot reach $ANOMALYVAE_DATA (a parent
# directory without search permission for others, e.g. under /root), the cluster is placed in
# ~postgres/anomalyvae-<hash of the intended path>/ instead; 'status' shows where.
set -euo pipefail
AV_TAG=postgres
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

PG_BIN=/usr/lib/postgresql/15/bin
START_TIMEOUT="${PG_START_TIMEOUT:-60}"
ROLE=anomalyvae
DATABASES=(anomalyvae anomalyvae_test)

usage() {
  sed -n '2,6p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
  exit 2
}

[ -x "$PG_BIN/pg_ctl" ] || av_die "PostgreSQL 15 is not installed ($PG_BIN/pg_ctl missing); run deploy/local/setup.sh"

# as_server_user COMMAND...: runs server-side commands (initdb, pg_ctl) as the cluster owner.
# From / so that the postgres user is never left in a directory it cannot read; without fd 9 so
# the server that pg_ctl starts does not inherit (and hold forever) this script's lock.
if av_is_root; then
  id postgres >/dev/null 2>&1 || av_die "running as root needs the 'postgres' system user (installed with Debian's postgresql)"
  as_server_user() { (cd / && runuser -u postgres -- "$@" 9>&-); }
else
  as_server_user() { "$@" 9>&-; }
fi

# Where the cluster lives (see the header for the root fallback).
BASE="$AV_DATA/postgres"
if av_is_root; then
  mkdir -p "$AV_DATA"
  if ! as_server_user test -x "$AV_DATA"; then
    intended=$BASE
    pg_home=$(getent passwd postgres | cut -d: -f6)
    [ -n "$pg_home" ] && [ -d "$pg_home" ] || av_die "user postgres cannot reach $AV_DATA and has no home directory to fall back to"
    BASE="$pg_home/anomalyvae-$(printf '%s' "$intended" | sha1sum | cut -c1-12)"
    FALLBACK_NOTE="user postgres cannot reach $intended; the cluster lives in $BASE"
  fi
fi
PGDATA_DIR="$BASE/data"
LOG="$BASE/postgres.log"
SOCKET_DIR="$BASE"

# The running cluster's port, from line 4 of postmaster.pid (empty when not running).
running_port() { sed -n '4p' "$PGDATA_DIR/postmaster.pid" 2>/dev/null || true; }

if [ "${1:-}" = start ]; then
  PORT="${PG_PORT:-5433}"
else
  PORT="${PG_PORT:-$(running_port)}"
  PORT="${PORT:-5433}"
fi
case "$PORT" in '' | *[!0-9]*) av_die "PG_PORT must be a port number, got '$PORT'" ;; esac

# Unix socket paths are limited to 107 bytes; past that, TCP only.
if [ "$((${#SOCKET_DIR} + 20))" -gt 107 ]; then
  SOCKET_DIR=""
fi

pg_ready() { "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$PORT" -U postgres -t 2; }
# True when the postmaster of *this* data directory runs: the pid in postmaster.pid is a live
# (not zombie) process whose command line names this data directory. (pg_ctl status would count
# a dead but not yet reaped postmaster as running.)
cluster_alive() { av_pid_alive "$PGDATA_DIR/postmaster.pid" "$PGDATA_DIR"; }
psql_admin() {
  "$PG_BIN/psql" -X -q -h 127.0.0.1 -p "$PORT" -U postgres -d postgres -v ON_ERROR_STOP=1 "$@"
}

init_cluster() {
  av_say "initdb into $PGDATA_DIR"
  mkdir -p "$BASE"
  if av_is_root; then chown postgres:postgres "$BASE"; fi
  chmod 700 "$BASE"
  # initdb into a temporary directory, renamed when complete: an interrupted initdb leaves no
  # half-made cluster behind that a later start would trip over.
  local tmp="$BASE/data.initdb"
  rm -rf "$tmp"
  if ! as_server_user "$PG_BIN/initdb" -D "$tmp" -U postgres -A trust -E UTF8 --no-locale --no-sync \
    >"$BASE/initdb.log" 2>&1; then
    av_log_tail "$BASE/initdb.log"
    av_die "initdb failed"
  fi
  cat >>"$tmp/postgresql.conf" <<'EOF'

# --- deploy/local/postgres.sh: development cluster settings ---
listen_addresses = '127.0.0.1'
# Durability off for speed: this cluster holds test and demo data only.
fsync = off
synchronous_commit = off
full_page_writes = off
EOF
  mv "$tmp" "$PGDATA_DIR"
}

# ensure_tls: a CA and a server certificate (SAN 127.0.0.1, localhost) in $BASE/tls, made once; the CA certificate
# is copied where the invoking user's clients find it.
TLS_DIR="$BASE/tls"
CA_COPY="$AV_DATA/postgres-ca.crt"
ensure_tls() {
  if [ ! -f "$TLS_DIR/server.crt" ] || [ ! -f "$TLS_DIR/server.key" ] || [ ! -f "$TLS_DIR/ca.crt" ]; then
    av_say "generating a local CA and server certificate in $TLS_DIR"
    local tmp="$TLS_DIR.tmp"
    av_make_local_tls "$TLS_DIR" "AnomalyVae local CA" server
    chmod 600 "$tmp/server.key"
    rm -rf "$TLS_DIR"
    mv "$tmp" "$TLS_DIR"
    if av_is_root; then chown -R postgres:postgres "$TLS_DIR"; fi
  fi
  cp "$TLS_DIR/ca.crt" "$CA_COPY.tmp" && mv -f "$CA_COPY.tmp" "$CA_COPY"
}

ensure_databases() {
  local sql db
  sql="SELECT 'CREATE ROLE $ROLE LOGIN SUPERUSER' WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$ROLE')"$'\n\\gexec\n'
  for db in "${DATABASES[@]}"; do
    sql+="SELECT 'CREATE DATABASE $db OWNER $ROLE' WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = '$db')"$'\n\\gexec\n'
  done
  printf '%s' "$sql" | psql_admin >/dev/null || av_die "creating role/databases failed"
}

cmd_start() {
  local t0 rport
  t0=$(av_now_ms)
  [ -n "${FALLBACK_NOTE:-}" ] && av_say "note: $FALLBACK_NOTE"
  if cluster_alive; then
    rport=$(running_port)
    [ "$rport" = "$PORT" ] || av_die "this cluster already runs on port $rport (asked for $PORT); stop it first"
    if ! pg_ready; then
      av_say "cluster process running; waiting until it accepts connections"
      av_wait_until "$START_TIMEOUT" pg_ready || {
        av_log_tail "$LOG"
        av_die "cluster in $PGDATA_DIR runs but does not accept connections on 127.0.0.1:$PORT"
      }
      ensure_databases
      av_say "ready on 127.0.0.1:$PORT"
      return 0
    fi
    ensure_databases
    av_say "already running on 127.0.0.1:$PORT (data $PGDATA_DIR)"
    return 0
  fi
  av_require_port_free 127.0.0.1 "$PORT" postgres
  # A postmaster killed with -9 whose process entry has not been reaped yet still "exists" for the
  # new postmaster's lock-file check; give the reaper a moment.
  local stale
  if stale=$(av_pid_read "$PGDATA_DIR/postmaster.pid"); then
    av_wait_until 30 av_not av_pid_exists "$stale" || av_die "stale postmaster pid $stale does not go away"
  fi
  [ -f "$PGDATA_DIR/PG_VERSION" ] || init_cluster
  ensure_tls
  [ -f "$LOG" ] && mv -f "$LOG" "$LOG.1"
  # -k '' disables the unix socket (path too long); pg_ctl -w waits for readiness itself. TLS is switched on here
  # rather than in postgresql.conf, so clusters made before it get it too.
  if ! as_server_user "$PG_BIN/pg_ctl" -D "$PGDATA_DIR" -l "$LOG" -w -t "$START_TIMEOUT" \
    -o "-p $PORT -k '$SOCKET_DIR' -c ssl=on -c ssl_cert_file='$TLS_DIR/server.crt' -c ssl_key_file='$TLS_DIR/server.key'" start >/dev/null 2>&1; then
    av_log_tail "$LOG"
    # pg_ctl may give up while the server is still coming up: do not leave it behind.
    cluster_alive && as_server_user "$PG_BIN/pg_ctl" -D "$PGDATA_DIR" -m immediate -w stop >/dev/null 2>&1
    av_die "PostgreSQL did not start within ${START_TIMEOUT}s (log: $LOG)"
  fi
  av_wait_until "$START_TIMEOUT" pg_ready || {
    av_log_tail "$LOG"
    av_die "PostgreSQL started but does not accept connections on 127.0.0.1:$PORT"
  }
  ensure_databases
  av_say "ready on 127.0.0.1:$PORT (data $PGDATA_DIR) in $(($(av_now_ms) - t0)) ms"
}

cmd_stop() {
  if ! cluster_alive; then
    av_say "not running"
    return 0
  fi
  # fast: disconnects clients and shuts down cleanly; immediate if that does not finish.
  if ! as_server_user "$PG_BIN/pg_ctl" -D "$PGDATA_DIR" -m fast -w -t 30 stop >/dev/null 2>&1; then
    av_warn "fast shutdown did not finish in 30s; using immediate"
    as_server_user "$PG_BIN/pg_ctl" -D "$PGDATA_DIR" -m immediate -w -t 10 stop >/dev/null 2>&1 ||
      av_stop_pid "$PGDATA_DIR/postmaster.pid" "$PGDATA_DIR" postgres 5
  fi
  av_say "stopped"
}

cmd_status() {
  [ -n "${FALLBACK_NOTE:-}" ] && av_say "note: $FALLBACK_NOTE"
  if cluster_alive; then
    if pg_ready; then
      av_say "running on 127.0.0.1:$PORT (pid $(av_pid_read "$PGDATA_DIR/postmaster.pid"), data $PGDATA_DIR)"
      return 0
    fi
    av_say "not running: postmaster $(av_pid_read "$PGDATA_DIR/postmaster.pid") alive but not accepting connections on 127.0.0.1:$PORT"
    return 3
  fi
  av_say "not running (data $PGDATA_DIR)"
  return 3
}

[ $# -ge 1 ] || usage
command=$1
shift
case "$command" in
  psql)
    pg_ready || av_die "no cluster accepts connections on 127.0.0.1:$PORT; run '$0 start'"
    exec "$PG_BIN/psql" -X -h 127.0.0.1 -p "$PORT" -U "$ROLE" -d anomalyvae "$@"
    ;;
esac
mkdir -p "$AV_DATA"
av_lock "$AV_DATA/postgres.lock"
case "$command" in
  start) cmd_start ;;
  stop) cmd_stop ;;
  status) cmd_status ;;
  *) usage ;;
esac
