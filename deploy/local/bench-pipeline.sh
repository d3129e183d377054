#!/usr/bin/env bash
# Pipeline benchmark of `anomalyvae serve` (prints numbers; not a test).
#   deploy/local/bench-pipeline.sh
# Against a running local Kafka and PostgreSQL (deploy/local/kafka.sh, postgres.sh), it
#   1. trains a small model on generated data (8 numeric features + 1 categorical),
#   2. produces EVENTS events (default 1,000,000) into a fresh 4-partition topic with kcat,
#   3. in the same run on the same topic:
#      (a) the raw consume rate of kcat (its own librdkafka),
#      (c) a bare Confluent.Kafka consumer loop (`anomalyvae-tools bench consume`: serve's client, librdkafka and
#          consumer settings, counting messages),
#      (b) serve's sustained rate through to committed PostgreSQL transactions (from its first commit to the
#          stored offsets reaching the end), the ratios, and serve's CPU per event split by stage (consume, decode,
#          score, decide on their own threads; the rest is commits, librdkafka's threads, GC and the runtime),
#   4. produces RATE events/s (default 10,000) for LIVE_SECONDS (default 30) into a second topic while serve runs,
#      and prints p50/p99 event-to-row latency: detected_at (the commit's transaction time) minus the event's
#      own timestamp (set by the producer just before sending) over the flagged rows, and serve's peak RSS,
#   5. two serve processes in one consumer group on the same topic (TWO_PROCESSES=1, the default; 0 skips): their
#      rate together, from the first commit to the stored offsets reaching the end, and its ratio to (c),
#   6. fuzz mix: the same EVENTS events with a fraction FUZZ_FRACTION (default 0.1; 0 skips this stage) replaced
#      by bad payloads (`anomalyvae-tools bench mix-bad-events`: every dead-letter reason), in a third topic produced
#      up front; a fresh serve process measures its rate as in (b) and the script prints it, the ratio to the
#      clean rate (b), and checks that every event was scored or dead-lettered exactly once,
#   7. (e) a windowed detector (W = 8 events per machine_id, WINDOWED=1, the default; 0 skips) on the topic of (b), a
#      fresh process measured as in (b): its rate beside the per-event rate.
# Environment: KAFKA_BOOTSTRAP (127.0.0.1:9092), ZK_CONNECT (127.0.0.1:2181), PG_HOST (127.0.0.1), PG_PORT (5433),
#   TWO_PROCESSES (1), WINDOWED (1), PG_USER (anomalyvae), PG_DATABASE (anomalyvae: an existing database to connect to while creating the
#   benchmark's own), EVENTS, RATE, LIVE_SECONDS, FUZZ_FRACTION, BENCH_DIR (a temporary directory), ANOMALYVAE / ANOMALYVAE_TOOLS (the CLI and tools commands;
#   default: build src/AnomalyVae.Cli in Release and run it), HTTP_PORT (18089, serve's metrics port),
#   SERVE_KAFKA_PROPERTIES (extra librdkafka properties for serve as JSON members, e.g. '"queued.min.messages": "300000"'),
#   SERVE_SETTINGS (extra top-level configuration sections for serve as JSON members, e.g.
#   '"Retraining": { "SampleSize": 0, "RecentSize": 0 }' or '"Scoring": { "BatchSize": 16384 }').
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
KAFKA_BOOTSTRAP="${KAFKA_BOOTSTRAP:-127.0.0.1:9092}"
ZK_CONNECT="${ZK_CONNECT:-127.0.0.1:2181}"
PG_HOST="${PG_HOST:-127.0.0.1}"
PG_PORT="${PG_PORT:-5433}"
PG_USER="${PG_USER:-anomalyvae}"
PG_DATABASE="${PG_DATABASE:-anomalyvae}"
EVENTS="${EVENTS:-1000000}"
RATE="${RATE:-10000}"
SECONDS_AT_RATE="${LIVE_SECONDS:-30}"
FUZZ_FRACTION="${FUZZ_FRACTION:-0.1}"
# The fuzz-mix detector's Scoring:MaxPayloadBytes: oversized faults (up to twice this) must fit in a Kafka message.
FUZZ_MAX_PAYLOAD=4096
HTTP_PORT="${HTTP_PORT:-18089}"
EXTRA_PROPERTIES="${SERVE_KAFKA_PROPERTIES:+, $SERVE_KAFKA_PROPERTIES}"
EXTRA_SETTINGS="${SERVE_SETTINGS:+, $SERVE_SETTINGS}"
PY=/usr/bin/python3
[ -x "$PY" ] || PY=python3
WORK="${BENCH_DIR:-$(mktemp -d /tmp/anomalyvae-bench.XXXXXX)}"
mkdir -p "$WORK"
KCAT=(kcat -b "$KAFKA_BOOTSTRAP" -X api.version.request=false -X broker.version.fallback=0.9.0.1)
RUN_ID="$(date +%s)"
DB="bench_$RUN_ID"
psql_base() { psql -X -q -tA -h "$PG_HOST" -p "$PG_PORT" -U "$PG_USER" "$@"; }
psql_db() { psql_base -d "$DB" -c "$1"; }
topic() { KAFKA_BOOTSTRAP="$KAFKA_BOOTSTRAP" ZK_CONNECT="$ZK_CONNECT" "$ROOT/deploy/local/kafka.sh" create-topic "$1" "$2" >/dev/null; }
now() { date +%s.%N; }

if [ -z "${ANOMALYVAE:-}" ]; then
  dotnet build "$ROOT/src/AnomalyVae.Cli" -c Release -v q -nologo >/dev/null
  ANOMALYVAE="dotnet $ROOT/src/AnomalyVae.Cli/bin/Release/net10.0/anomalyvae.dll"
fi
if [ -z "${ANOMALYVAE_TOOLS:-}" ]; then
  dotnet build "$ROOT/tools/AnomalyVae.Tools" -c Release -v q -nologo >/dev/null
  ANOMALYVAE_TOOLS="dotnet $ROOT/tools/AnomalyVae.Tools/bin/Release/net10.0/anomalyvae-tools.dll"
fi

echo "work dir $WORK"
"$PY" - "$WORK" "$EVENTS" <<'PY'
import json, random, sys
work, n = sys.argv[1], int(sys.argv[2])
random.seed(1)
kinds = ["a", "b", "c", "d", "e"]
def row():
    base = random.gauss(0, 1)
    r = {f"x{i}": round(base * (i + 1) + random.gauss(0, 0.5), 4) for i in range(8)}
    r["kind"] = kinds[int(abs(base) * 2) % 5]
    r["machine_id"] = f"m{random.randrange(100)}"
    return r
with open(f"{work}/train.csv", "w") as f:
    f.write(",".join([f"x{i}" for i in range(8)] + ["kind", "machine_id"]) + "\n")
    for _ in range(5000):
        r = row()
        f.write(",".join(str(r[f"x{i}"]) for i in range(8)) + f",{r['kind']},{r['machine_id']}\n")
with open(f"{work}/events.jsonl", "w") as f:
    for i in range(n):
        r = row(); r["ts"] = 1767225600000 + i
        f.write(json.dumps(r, separators=(",", ":")) + "\n")
spec = {"features": [{"name": f"x{i}", "kind": "numeric"} for i in range(8)] + [{"name": "kind", "kind": "categorical"}],
        "ignore": ["machine_id"]}
json.dump(spec, open(f"{work}/spec.json", "w"))
json.dump({"features": spec["features"]}, open(f"{work}/spec-windowed.json", "w"))
PY
$ANOMALYVAE train --data "$WORK/train.csv" --spec "$WORK/spec.json" --out "$WORK/model.onnx" --epochs 5 --threads 1 >/dev/null

TOPIC="bench-$RUN_ID"; LIVE="bench-live-$RUN_ID"; MIXED="bench-mixed-$RUN_ID"
topic "$TOPIC" 4; topic "$TOPIC.dlq" 1; topic "$LIVE" 4; topic "$LIVE.dlq" 1
psql_base -d "$PG_DATABASE" -c "CREATE DATABASE $DB"
t0=$(now)
"${KCAT[@]}" -P -t "$TOPIC" -l "$WORK/events.jsonl"
t1=$(now)
echo "produced $EVENTS events in $(echo "$t1 - $t0" | bc -l | xargs printf '%.1f') s"
fuzzing() { [ "$(echo "$FUZZ_FRACTION > 0" | bc -l)" = 1 ]; }
if fuzzing; then
  topic "$MIXED" 4; topic "$MIXED.dlq" 1
  mix=$($ANOMALYVAE_TOOLS bench mix-bad-events --model "$WORK/model.onnx" --in "$WORK/events.jsonl" --out "$WORK/mixed.jsonl" \
    --fraction "$FUZZ_FRACTION" --seed 1 --entity-field machine_id --time-field ts --max-payload-bytes "$FUZZ_MAX_PAYLOAD")
  echo "fuzz mix: $mix"
  BAD=$(awk '{print $3}' <<<"$mix")
  "${KCAT[@]}" -P -t "$MIXED" -l "$WORK/mixed.jsonl"
fi

# (a) bare librdkafka consumer.
t0=$(now)
consumed=$("${KCAT[@]}" -C -t "$TOPIC" -o beginning -e -q -f '%s\n' | wc -l)
t1=$(now)
raw_rate=$(echo "$consumed / ($t1 - $t0)" | bc -l)
# (c) bare Confluent.Kafka consumer loop.
bare=$($ANOMALYVAE_TOOLS bench consume --topic "$TOPIC" --bootstrap "$KAFKA_BOOTSTRAP" \
  --kafka-property api.version.request=false --kafka-property broker.version.fallback=0.9.0.1)
echo "$bare"
bare_rate=$(sed -n 's/.*: \([0-9]*\) events\/s.*/\1/p' <<<"$bare")

# serve_config FILE GROUP SECTIONS DETECTOR...: a serve configuration with the bench's Kafka and database, the given
# extra sections (JSON members ending in a comma, or "") and detectors (JSON objects), plus SERVE_SETTINGS.
serve_config() {
  local file=$1 group=$2 sections=$3
  shift 3
  local detectors
  detectors=$(printf '%s,\n' "$@" | sed '$ s/,$//')
  cat >"$file" <<JSON
{
  "Kafka": { "BootstrapServers": "$KAFKA_BOOTSTRAP", "GroupId": "$group",
             "Properties": { "api.version.request": "false", "broker.version.fallback": "0.9.0.1"$EXTRA_PROPERTIES } },
  "Postgres": { "ConnectionString": "Host=$PG_HOST;Port=$PG_PORT;Username=$PG_USER;Database=$DB" },
  "Detectors": [ $detectors ], $sections
  "Logging": { "LogLevel": { "Default": "Warning" } }$EXTRA_SETTINGS
}
JSON
}
# detector NAME TOPIC [EXTRA MEMBERS]: one detector on TOPIC with the bench's model and fields.
detector() {
  printf '{ "Name": "%s", "Topic": "%s", "Model": "%s", "DeadLetterTopic": "%s.dlq", "EntityField": "machine_id", "TimestampField": "ts"%s }' \
    "$1" "$2" "$WORK/model.onnx" "$2" "${3:+, $3}"
}
serve_config "$WORK/serve.json" "bench-$RUN_ID" "\"Http\": { \"Port\": $HTTP_PORT }," \
  "$(detector bulk "$TOPIC")" "$(detector live "$LIVE" '"StartFrom": "Latest"')"
$ANOMALYVAE serve --config "$WORK/serve.json" >"$WORK/serve.log" 2>&1 &
SERVE=$!
trap 'kill $SERVE 2>/dev/null || true' EXIT
committed() { psql_db "SELECT coalesce(sum(next_offset), 0) FROM consumer_offsets WHERE detector = '$1'" 2>/dev/null || echo 0; }
# measure DETECTOR: serve's rate from its first commit until the stored offsets reach EVENTS (sets rate, cpu_us).
measure() {
  until [ "$(committed "$1")" -gt 0 ]; do sleep 0.05; kill -0 $SERVE; done
  local t0 t1 first cpu0 cpu1
  t0=$(now); first=$(committed "$1"); cpu0=$(awk '{print $14 + $15}' /proc/$SERVE/stat)
  until [ "$(committed "$1")" -ge "$EVENTS" ]; do sleep 0.1; kill -0 $SERVE; done
  t1=$(now)
  cpu1=$(awk '{print $14 + $15}' /proc/$SERVE/stat)
  rate=$(echo "($EVENTS - $first) / ($t1 - $t0)" | bc -l)
  cpu_us=$(echo "($cpu1 - $cpu0) * 1000000 / $(getconf CLK_TCK) / ($EVENTS - $first)" | bc -l)
}
measure bulk
serve_rate=$rate
printf '(a) kcat (its own librdkafka): %.0f events/s (%s events)\n' "$raw_rate" "$consumed"
printf '(c) bare Confluent.Kafka consumer loop: %.0f events/s\n' "$bare_rate"
printf '(b) serve, consume to committed PostgreSQL transactions: %.0f events/s\n' "$serve_rate"
printf '(b)/(c) = %.2f   (b)/(a) = %.2f\n' "$(echo "$serve_rate / $bare_rate" | bc -l)" "$(echo "$serve_rate / $raw_rate" | bc -l)"
metric() { curl -s "http://127.0.0.1:$HTTP_PORT/metrics" | awk -v m="$1" '$1 == m {print $2}'; }
# stage_cpu DETECTOR: serve's CPU per event split by stage (the stages' own counters over all EVENTS events).
stage_cpu() {
  local consume decode score decide
  stage_us() { echo "$(metric "anomalyvae_stage_cpu_seconds_total{detector=\"$1\",stage=\"$2\"}") * 1000000 / $EVENTS" | bc -l; }
  consume=$(stage_us "$1" consume); decode=$(stage_us "$1" decode); score=$(stage_us "$1" score); decide=$(stage_us "$1" decide)
  printf 'serve CPU %.2f us/event (all threads, measured window): consume %.2f, decode %.2f, score %.2f, decide/sample %.2f, commit and the rest %.2f (stage CPU over all %s events)\n' \
    "$cpu_us" "$consume" "$decode" "$score" "$decide" "$(echo "$cpu_us - $consume - $decode - $score - $decide" | bc -l)" "$EVENTS"
}
stage_cpu bulk
printf 'commit wall time (dead letters + PostgreSQL, overlapped with the other stages): %.1f s\n' "$(metric 'anomalyvae_commit_seconds_sum{detector="bulk"}')"
printf 'flagged %s rows of %s events\n' "$(psql_db "SELECT count(*) FROM anomalies WHERE detector = 'bulk'")" "$EVENTS"

# Latency at a fixed produce rate; the "live" detector starts from the end of its (empty) topic.
sleep 2
"$PY" - "$RATE" "$SECONDS_AT_RATE" <<'PY' | "${KCAT[@]}" -P -t "$LIVE" -X queue.buffering.max.ms=1
import json, random, sys, time
rate, seconds = int(sys.argv[1]), int(sys.argv[2])
random.seed(2)
kinds = ["a", "b", "c", "d", "e"]
tick = 0.01; per_tick = max(1, int(rate * tick)); start = time.time(); sent = 0
out = sys.stdout
while sent < rate * seconds:
    lines = []
    ms = int(time.time() * 1000)
    for _ in range(per_tick):
        base = random.gauss(0, 1)
        r = {f"x{i}": round(base * (i + 1) + random.gauss(0, 0.5), 4) for i in range(8)}
        r["kind"] = kinds[int(abs(base) * 2) % 5]; r["machine_id"] = f"m{random.randrange(100)}"; r["ts"] = ms
        lines.append(json.dumps(r, separators=(",", ":")))
    out.write("\n".join(lines) + "\n"); out.flush()
    sent += per_tick
    delay = start + sent / rate - time.time()
    if delay > 0:
        time.sleep(delay)
PY
sleep 3
rss_kb=$(awk '/VmHWM/ {print $2}' /proc/$SERVE/status)
read -r p50 p99 n <<<"$(psql_db "SELECT round(percentile_cont(0.5) WITHIN GROUP (ORDER BY ms))::int, round(percentile_cont(0.99) WITHIN GROUP (ORDER BY ms))::int, count(*) FROM (SELECT extract(epoch FROM detected_at - event_time) * 1000 AS ms FROM anomalies WHERE detector = 'live') l" | tr '|' ' ')"
live=$(psql_db "SELECT coalesce(sum(events_scored + events_dead_lettered), 0) FROM scoring_stats WHERE detector = 'live'")
printf 'at %s events/s for %s s: %s events scored, event-to-row latency over %s flagged rows p50 %s ms, p99 %s ms\n' \
  "$RATE" "$SECONDS_AT_RATE" "$live" "$n" "$p50" "$p99"
printf 'serve peak RSS: %.0f MB\n' "$(echo "$rss_kb / 1024" | bc -l)"
kill -TERM $SERVE; wait $SERVE || true
trap - EXIT

if [ "${TWO_PROCESSES:-1}" = 1 ]; then
  serve_config "$WORK/serve-pair.json" "bench-pair-$RUN_ID" "" "$(detector pair "$TOPIC")"
  $ANOMALYVAE serve --config "$WORK/serve-pair.json" --Http:Port=$((HTTP_PORT + 1)) >"$WORK/serve-pair-1.log" 2>&1 &
  PAIR1=$!
  $ANOMALYVAE serve --config "$WORK/serve-pair.json" --Http:Port=$((HTTP_PORT + 2)) >"$WORK/serve-pair-2.log" 2>&1 &
  PAIR2=$!
  trap 'kill $PAIR1 $PAIR2 2>/dev/null || true' EXIT
  until [ "$(committed pair)" -gt 0 ]; do sleep 0.05; kill -0 $PAIR1 $PAIR2; done
  t0=$(now); first=$(committed pair)
  until [ "$(committed pair)" -ge "$EVENTS" ]; do sleep 0.1; kill -0 $PAIR1 $PAIR2; done
  t1=$(now)
  pair_rate=$(echo "($EVENTS - $first) / ($t1 - $t0)" | bc -l)
  printf '(d) two serve processes in one group: %.0f events/s together, (d)/(c) = %.2f\n' "$pair_rate" "$(echo "$pair_rate / $bare_rate" | bc -l)"
  kill -TERM $PAIR1 $PAIR2; wait $PAIR1 $PAIR2 || true
  trap - EXIT
fi

if fuzzing; then
  # A fresh process on the mixed topic alone, measured like (b).
  serve_config "$WORK/serve-mixed.json" "bench-$RUN_ID" "\"Scoring\": { \"MaxPayloadBytes\": $FUZZ_MAX_PAYLOAD }, \"Http\": { \"Port\": $HTTP_PORT }," \
    "$(detector mixed "$MIXED")"
  $ANOMALYVAE serve --config "$WORK/serve-mixed.json" >"$WORK/serve-mixed.log" 2>&1 &
  SERVE=$!
  trap 'kill $SERVE 2>/dev/null || true' EXIT
  measure mixed
  mixed_rate=$rate
  read -r scored dead <<<"$(psql_db "SELECT coalesce(sum(events_scored), 0), coalesce(sum(events_dead_lettered), 0) FROM scoring_stats WHERE detector = 'mixed'" | tr '|' ' ')"
  printf 'fuzz mix (%s of %s events bad): serve %.0f events/s (%.1f us CPU/event) vs clean %.0f events/s: mixed/clean = %.2f\n' \
    "$BAD" "$EVENTS" "$mixed_rate" "$cpu_us" "$serve_rate" "$(echo "$mixed_rate / $serve_rate" | bc -l)"
  if [ "$dead" = "$BAD" ] && [ "$((scored + dead))" = "$EVENTS" ]; then
    printf 'fuzz mix totals: %s scored + %s dead-lettered = %s events (as expected)\n' "$scored" "$dead" "$EVENTS"
  else
    printf 'fuzz mix totals WRONG: %s scored + %s dead-lettered, expected %s dead-lettered of %s events\n' "$scored" "$dead" "$BAD" "$EVENTS"
  fi
  kill -TERM $SERVE; wait $SERVE || true
  trap - EXIT
fi
if [ "${WINDOWED:-1}" = 1 ]; then
  # (e) A windowed detector (W = 8 events per machine_id) on the bulk topic, a fresh process measured like (b): the
  # per-entity state read, kept and written in each batch's transaction. kcat produces without keys, so a machine's
  # events spread over the 4 partitions and serve keeps a history per (partition, machine).
  $ANOMALYVAE train --data "$WORK/train.csv" --spec "$WORK/spec-windowed.json" --entity-column machine_id --window 8 \
    --out "$WORK/model-windowed.onnx" --epochs 5 --threads 1 >/dev/null
  serve_config "$WORK/serve-windowed.json" "bench-$RUN_ID" "\"Http\": { \"Port\": $HTTP_PORT }," \
    "$(printf '{ "Name": "windowed", "Topic": "%s", "Model": "%s", "DeadLetterTopic": "%s.dlq", "EntityField": "machine_id", "TimestampField": "ts" }' \
      "$TOPIC" "$WORK/model-windowed.onnx" "$TOPIC")"
  $ANOMALYVAE serve --config "$WORK/serve-windowed.json" >"$WORK/serve-windowed.log" 2>&1 &
  SERVE=$!
  trap 'kill $SERVE 2>/dev/null || true' EXIT
  measure windowed
  states=$(psql_db "SELECT count(*) FROM window_state WHERE detector = 'windowed'")
  printf '(e) windowed serve (W = 8, %s entity states): %.0f events/s (%.1f us CPU/event) vs per-event (b) %.0f events/s: windowed/per-event = %.2f\n' \
    "$states" "$rate" "$cpu_us" "$serve_rate" "$(echo "$rate / $serve_rate" | bc -l)"
  stage_cpu windowed
  printf 'windowed commit wall time: %.1f s\n' "$(metric 'anomalyvae_commit_seconds_sum{detector="windowed"}')"
  kill -TERM $SERVE; wait $SERVE || true
  trap - EXIT
fi
echo "database $DB and topics $TOPIC, $LIVE${MIXED:+, $MIXED} are left for inspection"
