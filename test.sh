#!/usr/bin/env bash
# Sets up this machine and runs every test:   ./test.sh
#   1. deploy/local/setup.sh (Debian packages, Kafka, ONNX Runtime; quick when already done)
#   2. dotnet build AnomalyVae.sln with all warnings as errors
#   3. test Kafka + PostgreSQL on test ports (started during the build), data in .data/test
#   4. unit tests, integration tests, then quality checks and benchmarks
#      (TRX results in artifacts/test-results)
#   5. stops the test Kafka/PostgreSQL again
# Last line: "N passed, N failed" (", N skipped" when any were). Exit code 0 only when tests ran
# and none failed.
# Environment:
#   ANOMALYVAE_KEEP_INFRA=1           leave test Kafka/PostgreSQL running afterwards
#   ANOMALYVAE_TEST_KAFKA_PORT (19092), ANOMALYVAE_TEST_ZK_PORT (12181), ANOMALYVAE_TEST_PG_PORT (15433)
#   ANOMALYVAE_TEST_KAFKA + ANOMALYVAE_TEST_ZK / ANOMALYVAE_TEST_PG   use existing servers instead
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
REPO=$(pwd)
AV_TAG=test
. deploy/local/lib.sh

RESULTS="$REPO/artifacts/test-results"
export ANOMALYVAE_DATA="$REPO/.data/test"
export KAFKA_PORT="${ANOMALYVAE_TEST_KAFKA_PORT:-19092}"
export ZK_PORT="${ANOMALYVAE_TEST_ZK_PORT:-12181}"
export PG_PORT="${ANOMALYVAE_TEST_PG_PORT:-15433}"
# The integration test fixture reuses servers named here instead of starting its own.
own_kafka=0
own_pg=0
if [ -z "${ANOMALYVAE_TEST_KAFKA:-}" ]; then
  own_kafka=1
  export ANOMALYVAE_TEST_KAFKA="127.0.0.1:$KAFKA_PORT"
  export ANOMALYVAE_TEST_ZK="127.0.0.1:$ZK_PORT"
fi
if [ -z "${ANOMALYVAE_TEST_PG:-}" ]; then
  own_pg=1
  export ANOMALYVAE_TEST_PG="Host=127.0.0.1;Port=$PG_PORT;Username=anomalyvae;Database=anomalyvae_test"
fi

passed=0
failed=0
skipped=0
failures=()
ran_any=0
started_s=$SECONDS

section() { printf '\n== %s\n' "$*"; }

finish() {
  local code=$?
  trap - EXIT INT TERM
  if [ "${ANOMALYVAE_KEEP_INFRA:-}" = 1 ]; then
    section "keeping test infrastructure (ANOMALYVAE_KEEP_INFRA=1): Kafka $ANOMALYVAE_TEST_KAFKA, PostgreSQL port $PG_PORT"
  else
    section "stopping test infrastructure"
    # Wait for start-ups still in flight (a failed build exits early) so nothing is left behind.
    wait 2>/dev/null
    [ "$own_kafka" = 1 ] && deploy/local/kafka.sh stop
    [ "$own_pg" = 1 ] && deploy/local/postgres.sh stop
  fi
  if [ "${#failures[@]}" -gt 0 ]; then
    section "failed"
    printf '  %s\n' "${failures[@]}"
  fi
  printf '\ntook %ss\n' "$((SECONDS - started_s))"
  if [ "$failed" -gt 0 ] || [ "$ran_any" = 0 ]; then
    [ "$code" -ne 0 ] || code=1
  fi
  local summary="$passed passed, $failed failed"
  [ "$skipped" -gt 0 ] && summary+=", $skipped skipped"
  printf '%s\n' "$summary"
  exit "$code"
}
trap finish EXIT
trap 'exit 130' INT TERM

section "setup"
deploy/local/setup.sh || av_die "setup failed"

# Start the servers in the background while the solution builds (they are ready in seconds).
mkdir -p "$ANOMALYVAE_DATA"
kafka_job=""
pg_job=""
if [ "$own_kafka" = 1 ]; then
  # Fresh broker state per run (topics of earlier runs would only slow start-up), unless running.
  if ! deploy/local/kafka.sh status >/dev/null 2>&1; then
    rm -rf "$ANOMALYVAE_DATA/kafka/kafka-logs" "$ANOMALYVAE_DATA/kafka/zookeeper"
  fi
  deploy/local/kafka.sh start >"$ANOMALYVAE_DATA/kafka-start.out" 2>&1 &
  kafka_job=$!
fi
if [ "$own_pg" = 1 ]; then
  deploy/local/postgres.sh start >"$ANOMALYVAE_DATA/postgres-start.out" 2>&1 &
  pg_job=$!
fi

section "build"
dotnet build AnomalyVae.sln --nologo -v minimal -warnaserror || av_die "build failed"

# count_trx FILE: adds the outcomes in a TRX file to the totals and collects failures with messages.
count_trx() {
  local counts
  counts=$(python3 - "$1" <<'PY'
import sys, xml.etree.ElementTree as ET
ns = {"t": "http://microsoft.com/schemas/VisualStudio/TeamTest/2010"}
passed = failed = skipped = 0
lines = []
for r in ET.parse(sys.argv[1]).getroot().iterfind(".//t:Results/t:UnitTestResult", ns):
    outcome = r.get("outcome")
    if outcome == "Passed":
        passed += 1
    elif outcome == "NotExecuted":
        skipped += 1
    else:
        failed += 1
        msg = r.find("t:Output/t:ErrorInfo/t:Message", ns)
        text = (msg.text or "").strip().splitlines() if msg is not None else []
        lines.append(f"{r.get('testName')} [{outcome}]" + (f": {text[0]}" if text else ""))
        lines.extend("      " + t for t in text[1:6])
print(passed, failed, skipped)
print("\n".join(lines))
PY
  ) || return 1
  local p f s
  read -r p f s <<<"$(head -n 1 <<<"$counts")"
  passed=$((passed + p))
  failed=$((failed + f))
  skipped=$((skipped + s))
  [ $((p + f + s)) -gt 0 ] && ran_any=1
  while IFS= read -r line; do
    [ -n "$line" ] && failures+=("$line")
  done < <(tail -n +2 <<<"$counts")
  return 0
}

# run_tests NAME PROJECT: dotnet test with a TRX logger; a run that crashes or hangs without
# failing a test counts as one failure, so it cannot pass unnoticed.
run_tests() {
  local name=$1 project=$2 trx="$RESULTS/$1.trx" rc
  section "$name tests"
  rm -f "$trx"
  dotnet test "$project" --no-build --nologo --results-directory "$RESULTS" \
    --logger "trx;LogFileName=$name.trx" --logger "console;verbosity=minimal" \
    --blame-hang-timeout 10m --blame-hang-dump-type none
  rc=$?
  local before=$failed
  if [ ! -f "$trx" ] || ! count_trx "$trx"; then
    failed=$((failed + 1))
    failures+=("$name: no test results (dotnet test exit code $rc)")
  elif [ "$rc" -ne 0 ] && [ "$failed" -eq "$before" ]; then
    failed=$((failed + 1))
    failures+=("$name: test run aborted (dotnet test exit code $rc) although no test failed")
  fi
}

section "test infrastructure"
if [ -n "$kafka_job" ]; then
  wait "$kafka_job"
  rc=$?
  cat "$ANOMALYVAE_DATA/kafka-start.out"
  [ "$rc" = 0 ] || av_die "Kafka did not start"
fi
if [ -n "$pg_job" ]; then
  wait "$pg_job"
  rc=$?
  cat "$ANOMALYVAE_DATA/postgres-start.out"
  [ "$rc" = 0 ] || av_die "PostgreSQL did not start"
fi

rm -rf "$RESULTS"
mkdir -p "$RESULTS"
# Unit tests first: they need nothing but their process and fail fastest.
run_tests unit tests/AnomalyVae.UnitTests/AnomalyVae.UnitTests.csproj
run_tests integration tests/AnomalyVae.IntegrationTests/AnomalyVae.IntegrationTests.csproj
run_tests quality tests/AnomalyVae.QualityTests/AnomalyVae.QualityTests.csproj

# Reaching here means every step ran; finish() decides the exit code from the counts.
exit 0
