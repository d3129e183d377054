# Shared shell functions for deploy/local/*.sh. Source it; do not run it.
#   . "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# Provides: repo/cache/data paths, progress output, root/sudo handling, pid files that are checked
# against the process command line (so a recycled pid is never signalled), wait loops, port probes.

# shellcheck shell=bash

AV_REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
AV_CACHE="${ANOMALYVAE_CACHE:-$HOME/.cache/anomalyvae}"
AV_DATA="${ANOMALYVAE_DATA:-$AV_REPO_ROOT/.data}"
# Name shown in front of progress lines; each script sets its own.
AV_TAG="${AV_TAG:-anomalyvae}"

av_say() { printf '[%s] %s\n' "$AV_TAG" "$*"; }
av_warn() { printf '[%s] warning: %s\n' "$AV_TAG" "$*" >&2; }
av_die() {
  printf '[%s] error: %s\n' "$AV_TAG" "$*" >&2
  exit 1
}

av_is_root() { [ "$(id -u)" -eq 0 ]; }

# Runs a command as root: directly when we are root, through sudo otherwise.
av_as_root() {
  if av_is_root; then
    "$@"
  elif command -v sudo >/dev/null 2>&1; then
    sudo "$@"
  else
    av_die "need root to run '$*' (not root and sudo is not available)"
  fi
}

# Milliseconds since the epoch, for timing messages.
av_now_ms() { date +%s%3N; }

# av_wait_until TIMEOUT_S COMMAND...: polls COMMAND every 0.2 s until it succeeds (returns 0)
# or TIMEOUT_S seconds pass (returns 1).
av_wait_until() {
  local timeout_s=$1
  shift
  local deadline=$((SECONDS + timeout_s))
  while true; do
    if "$@"; then return 0; fi
    if [ "$SECONDS" -ge "$deadline" ]; then return 1; fi
    sleep 0.2
  done
}

# av_port_open HOST PORT: true when something accepts TCP connections there.
av_port_open() {
  timeout 2 bash -c 'exec 3<>"/dev/tcp/$1/$2"' _ "$1" "$2" 2>/dev/null
}

# av_pid_read PIDFILE: prints the pid stored in PIDFILE (nothing when absent or malformed).
av_pid_read() {
  local pid=""
  [ -f "$1" ] && read -r pid <"$1" 2>/dev/null
  case "$pid" in
    '' | *[!0-9]*) return 1 ;;
  esac
  printf '%s\n' "$pid"
}

# av_pid_alive PIDFILE MARKER: true when the pid in PIDFILE runs and its command line contains
# MARKER. The marker (e.g. the config file path) makes sure a pid recycled by the OS for an
# unrelated process is never mistaken for ours.
av_pid_alive() {
  local pid
  pid=$(av_pid_read "$1") || return 1
  [ -r "/proc/$pid/cmdline" ] || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$2"
}

# av_pid_exists PID: true while the process table has PID (running or zombie).
av_pid_exists() { [ -e "/proc/$1" ]; }

# av_start_detached PIDFILE LOGFILE COMMAND...: starts COMMAND in its own session (so Ctrl-C in
# the calling terminal or a test runner's process group does not reach it), stdin from /dev/null,
# stdout+stderr appended to LOGFILE, and records its pid in PIDFILE.
av_start_detached() {
  local pidfile=$1 logfile=$2
  shift 2
  # A pid file left by a process that died must not pass for the new one's.
  rm -f "$pidfile"
  # The inner shell writes its own pid (atomically, via rename) and then execs the command, so the
  # pid is the command's. fd 9 (av_lock) is closed so the long-lived process does not hold the lock.
  setsid bash -c 'echo $$ >"$0.tmp" && mv -f "$0.tmp" "$0" && exec "$@"' "$pidfile" "$@" \
    </dev/null >>"$logfile" 2>&1 9>&- &
  # Wait (briefly) for the pid file so callers can rely on it.
  av_wait_until 5 test -s "$pidfile" || av_die "process did not start: $*"
}

# av_stop_pid PIDFILE MARKER NAME [TIMEOUT_S]: sends TERM to the process in PIDFILE (only if it is
# ours, see av_pid_alive), waits up to TIMEOUT_S (default 20) for it to exit, then sends KILL.
# Removes PIDFILE. Returns 0 when the process is gone.
av_stop_pid() {
  local pidfile=$1 marker=$2 name=$3 timeout_s=${4:-20} pid
  if ! av_pid_alive "$pidfile" "$marker"; then
    rm -f "$pidfile"
    return 0
  fi
  pid=$(av_pid_read "$pidfile")
  kill -TERM "$pid" 2>/dev/null || true
  if ! av_wait_until "$timeout_s" av_not av_pid_alive "$pidfile" "$marker"; then
    av_warn "$name (pid $pid) did not exit within ${timeout_s}s after TERM; sending KILL"
    kill -KILL "$pid" 2>/dev/null || true
    av_wait_until 5 av_not av_pid_alive "$pidfile" "$marker" || av_die "$name (pid $pid) survived KILL"
  fi
  rm -f "$pidfile"
}

av_not() { ! "$@"; }

# av_log_tail FILE [LINES]: prints the end of a log file to stderr, indented, for failure reports.
av_log_tail() {
  local file=$1 lines=${2:-30}
  if [ -f "$file" ]; then
    printf '[%s] last %s lines of %s:\n' "$AV_TAG" "$lines" "$file" >&2
    tail -n "$lines" "$file" | sed 's/^/    /' >&2
  fi
}

# av_require_port_free HOST PORT WHAT: fails clearly when a foreign process already listens there.
av_require_port_free() {
  if av_port_open "$1" "$2"; then
    av_die "$3: port $1:$2 is already in use by another process (set a different port, e.g. via the environment)"
  fi
}

# av_lock FILE: holds an exclusive lock on FILE (fd 9) until the script exits, so two commands
# on the same data dir (e.g. parallel test runs) do not start or stop things at the same time.
av_lock() {
  mkdir -p "$(dirname "$1")"
  exec 9>"$1"
  flock -w 120 9 || av_die "another command holds $1 (waited 120s)"
}

# av_make_local_tls DIR CA_NAME NAME: a throw-away CA and one server certificate signed by it (SAN 127.0.0.1,
# localhost) as ca.crt, NAME.crt and NAME.key in DIR.tmp; the caller adds what it needs and moves DIR.tmp to DIR,
# so a half-made DIR never exists. The CA key is discarded: it signs this one certificate.
av_make_local_tls() {
  local dir=$1 ca_name=$2 name=$3
  command -v openssl >/dev/null 2>&1 || av_die "openssl is not installed; run deploy/local/setup.sh"
  rm -rf "$dir.tmp"
  mkdir -p "$dir.tmp"
  (
    cd "$dir.tmp"
    openssl req -x509 -new -newkey rsa:2048 -nodes -sha256 -days 3650 -subj "/CN=$ca_name" \
      -keyout ca.key -out ca.crt >/dev/null 2>&1
    openssl req -new -newkey rsa:2048 -nodes -subj "/CN=localhost" -keyout "$name.key" -out "$name.csr" >/dev/null 2>&1
    printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n' >"$name.ext"
    openssl x509 -req -in "$name.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -days 3650 -sha256 \
      -extfile "$name.ext" -out "$name.crt" >/dev/null 2>&1
    rm -f "$name.csr" "$name.ext" ca.srl ca.key
  ) || av_die "openssl could not make the certificates"
}
