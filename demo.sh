#!/usr/bin/env bash
# The quickstart demo, one command on a fresh Debian 12 machine:   ./demo.sh
#   1. set-up (deploy/local/setup.sh) and build
#   2. local Kafka (127.0.0.1:9092) and PostgreSQL (127.0.0.1:5433)
#   3. generate labelled training data for two detectors (sensor fleet, card payments) and train a model each
#   4. register the models, start `anomalyvae serve` and `anomalyvae api` (dashboard) in the background,
#      stream a labelled test stream through Kafka
#   5. report: events streamed, anomalies flagged, precision and recall against the injected labels, the top
#      anomalies with their contributing features, and example SQL
# The services stay up for exploration; the last lines say how to stop them. Running it again starts over
# (demo topics recreated, demo rows deleted) and gives the same numbers.
# Environment: ANOMALYVAE_DATA (default ./.data), KAFKA_PORT, ZK_PORT, PG_PORT, DEMO_HTTP_PORT (8080),
#   DEMO_TRAIN_EVENTS (60000), DEMO_STREAM_EVENTS (20000 per detector).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
REPO=$(pwd)
export ANOMALYVAE_DATA="${ANOMALYVAE_DATA:-$REPO/.data}"
export KAFKA_PORT="${KAFKA_PORT:-9092}" ZK_PORT="${ZK_PORT:-2181}" PG_PORT="${PG_PORT:-5433}"
HTTP_PORT="${DEMO_HTTP_PORT:-8080}"
API_PORT="${DEMO_API_PORT:-8081}"
TRAIN_EVENTS="${DEMO_TRAIN_EVENTS:-60000}"
STREAM_EVENTS="${DEMO_STREAM_EVENTS:-20000}"
DEMO="$ANOMALYVAE_DATA/demo"
KAFKA_PROPS=(--kafka-property api.version.request=false --kafka-property broker.version.fallback=0.9.0.1)
started=$(date +%s)

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
psql_demo() { deploy/local/postgres.sh psql -q -v ON_ERROR_STOP=1 "$@"; }

step "set-up"
deploy/local/setup.sh
./anomalyvae --help >/dev/null

step "local Kafka and PostgreSQL"
deploy/local/kafka.sh start
deploy/local/postgres.sh start
mkdir -p "$DEMO"

# A previous demo's services would hold the demo topics and ports; stop them before starting over.
for name in serve api; do
  if [[ -f "$DEMO/$name.pid" ]] && kill -0 "$(cat "$DEMO/$name.pid")" 2>/dev/null; then
    step "stopping the previous demo's $name"
    kill -TERM "$(cat "$DEMO/$name.pid")"
    for _ in $(seq 1 60); do kill -0 "$(cat "$DEMO/$name.pid")" 2>/dev/null || break; sleep 0.5; done
  fi
  rm -f "$DEMO/$name.pid"
done

step "training data and models"
# Sensors train on readings with the known faults left out: a windowed model would learn each one W times over
# (docs/concepts.md, Windows).
./anomalyvae-tools generate sensors --count "$TRAIN_EVENTS" --seed 1 --anomaly-rate 0 --out "$DEMO/sensors-train.csv"
# Payments train on history with the known fraud left out, as a bank drops charged-back payments: left in, the
# VAE learns the fraud as one more kind of normal (README, Quickstart).
./anomalyvae-tools generate transactions --count "$((TRAIN_EVENTS * 2))" --seed 1 --accounts 2000 --anomaly-rate 0 --out "$DEMO/transactions-train.csv"
export SOURCE_DATE_EPOCH=1767225600 # identical runs give identical model files
# The sensor detector is windowed: each reading is scored with its machine's last 8 readings (ordered by ts), so a
# stuck sensor or a drift shows. Faults are about 1 % of readings, so its threshold is calibrated at 0.1 %.
./anomalyvae train --data "$DEMO/sensors-train.csv" --out "$DEMO/sensors.onnx" --report "$DEMO/sensors-report.html" \
  --entity-column machine_id --order-column ts --target-fpr 0.001
# Payment amounts scale with each account, so the numeric variances are modelled per record (see README, Limits).
# Fraud is 0.5 % of payments: at the default 1 % false-positive rate false alarms would outnumber it two to one,
# so the payments threshold is calibrated at 0.2 %.
./anomalyvae train --data "$DEMO/transactions-train.csv" --out "$DEMO/transactions.onnx" --report "$DEMO/transactions-report.html" \
  --variance PerRow --activation LeakyRelu --target-fpr 0.002
unset SOURCE_DATE_EPOCH

step "topics and database"
for t in demo.sensors demo.sensors.dlq demo.transactions demo.transactions.dlq; do
  deploy/local/kafka.sh delete-topic "$t" >/dev/null
done
deploy/local/kafka.sh create-topic demo.sensors 4
deploy/local/kafka.sh create-topic demo.transactions 4
deploy/local/kafka.sh create-topic demo.sensors.dlq 1
deploy/local/kafka.sh create-topic demo.transactions.dlq 1
CONNECTION="Host=127.0.0.1;Port=$PG_PORT;Username=anomalyvae;Database=anomalyvae"
./anomalyvae db migrate --connection "$CONNECTION"
# The topics were recreated, so their offsets start at 0 again: forget the old demo rows and offsets.
psql_demo -c "DELETE FROM models WHERE detector IN ('sensors','transactions');
              DELETE FROM anomalies WHERE detector IN ('sensors','transactions');
              DELETE FROM consumer_offsets WHERE detector IN ('sensors','transactions');
              DELETE FROM scoring_stats WHERE detector IN ('sensors','transactions');"

./anomalyvae models register --detector sensors --file "$DEMO/sensors.onnx" --activate --connection "$CONNECTION"
./anomalyvae models register --detector transactions --file "$DEMO/transactions.onnx" --activate --connection "$CONNECTION"

cat > "$DEMO/serve.json" <<EOF
{
  "Kafka": {
    "BootstrapServers": "127.0.0.1:$KAFKA_PORT",
    "GroupId": "anomalyvae-demo",
    "Properties": { "api.version.request": "false", "broker.version.fallback": "0.9.0.1" }
  },
  "Postgres": { "ConnectionString": "$CONNECTION" },
  "Http": { "Port": $HTTP_PORT },
  "Detectors": [
    { "Name": "sensors", "Topic": "demo.sensors", "Model": "$DEMO/sensors.onnx",
      "DeadLetterTopic": "demo.sensors.dlq", "EntityField": "machine_id", "TimestampField": "ts" },
    { "Name": "transactions", "Topic": "demo.transactions", "Model": "$DEMO/transactions.onnx",
      "DeadLetterTopic": "demo.transactions.dlq", "EntityField": "account_id", "TimestampField": "ts" }
  ]
}
EOF

step "starting anomalyvae serve (log: $DEMO/serve.log)"
nohup ./anomalyvae serve --config "$DEMO/serve.json" >"$DEMO/serve.log" 2>&1 &
echo $! >"$DEMO/serve.pid"
ready=0
for _ in $(seq 1 120); do
  if curl -fsS "http://127.0.0.1:$HTTP_PORT/readyz" >/dev/null 2>&1; then ready=1; break; fi
  kill -0 "$(cat "$DEMO/serve.pid")" 2>/dev/null || break
  sleep 0.5
done
if [[ $ready != 1 ]]; then
  echo "anomalyvae serve did not become ready; last log lines:" >&2
  tail -n 30 "$DEMO/serve.log" >&2
  exit 1
fi
echo "ready: http://127.0.0.1:$HTTP_PORT/readyz"

step "starting the query API and dashboard (log: $DEMO/api.log)"
nohup ./anomalyvae api --connection "$CONNECTION" --port "$API_PORT" >"$DEMO/api.log" 2>&1 &
echo $! >"$DEMO/api.pid"
for _ in $(seq 1 60); do
  curl -fsS "http://127.0.0.1:$API_PORT/api/detectors" >/dev/null 2>&1 && break
  sleep 0.5
done

step "streaming $STREAM_EVENTS labelled test events per detector through Kafka"
./anomalyvae-tools generate sensors --count "$STREAM_EVENTS" --seed 2 --topic demo.sensors --labels "$DEMO/sensors-labels.csv" \
  --bootstrap "127.0.0.1:$KAFKA_PORT" "${KAFKA_PROPS[@]}"
./anomalyvae-tools generate transactions --count "$STREAM_EVENTS" --seed 2 --accounts 2000 --topic demo.transactions --labels "$DEMO/transactions-labels.csv" \
  --bootstrap "127.0.0.1:$KAFKA_PORT" "${KAFKA_PROPS[@]}"

echo "waiting for the service to commit every event..."
done_events=0
for _ in $(seq 1 240); do
  done_events=$(psql_demo -At -c "SELECT coalesce(sum(next_offset), 0) FROM consumer_offsets WHERE detector IN ('sensors','transactions')")
  [[ "$done_events" -ge $((2 * STREAM_EVENTS)) ]] && break
  sleep 0.5
done
if [[ "$done_events" -lt $((2 * STREAM_EVENTS)) ]]; then
  echo "only $done_events of $((2 * STREAM_EVENTS)) events were committed in time; see $DEMO/serve.log" >&2
  exit 1
fi

step "report"
for d in sensors transactions; do
  psql_demo <<SQL
CREATE TEMP TABLE labels (event_id text PRIMARY KEY, label int, anomaly_kind text);
\copy labels FROM '$DEMO/$d-labels.csv' WITH (FORMAT csv, HEADER true)
WITH joined AS (
  SELECT l.label, a.id IS NOT NULL AS flagged
  FROM labels l LEFT JOIN anomalies a ON a.detector = '$d' AND a.event->>'event_id' = l.event_id)
SELECT '$d' AS detector,
       count(*) AS events_streamed,
       count(*) FILTER (WHERE flagged) AS anomalies_flagged,
       count(*) FILTER (WHERE label = 1) AS injected_anomalies,
       round(count(*) FILTER (WHERE flagged AND label = 1)::numeric / nullif(count(*) FILTER (WHERE flagged), 0), 3) AS precision,
       round(count(*) FILTER (WHERE flagged AND label = 1)::numeric / nullif(count(*) FILTER (WHERE label = 1), 0), 3) AS recall
FROM joined;
SELECT '$d' AS detector, l.anomaly_kind AS kind, count(a.id) AS caught, count(*) AS injected
FROM labels l LEFT JOIN anomalies a ON a.detector = '$d' AND a.event->>'event_id' = l.event_id
WHERE l.label = 1 GROUP BY l.anomaly_kind ORDER BY 2;
SQL
done

echo "Top 5 anomalies (highest score) with their three largest feature contributions:"
psql_demo -c "
SELECT detector, entity, event_time, round(score::numeric, 2) AS score, to_char(p_value, '9.9EEEE') AS p_value,
       (SELECT string_agg(c->>'feature' || ' ' || round((c->>'score')::numeric, 1), ', ')
          FROM (SELECT c FROM jsonb_array_elements(contributions) AS c LIMIT 3) AS top) AS top_features
FROM anomalies WHERE detector IN ('sensors','transactions')
ORDER BY score DESC LIMIT 5;"

cat <<EOF

Finished in $(( $(date +%s) - started )) s. Services are still running:
  dashboard    http://127.0.0.1:$API_PORT/              API  http://127.0.0.1:$API_PORT/api/anomalies?detector=sensors
  metrics      http://127.0.0.1:$HTTP_PORT/metrics      readiness  http://127.0.0.1:$HTTP_PORT/readyz
  reports      $DEMO/sensors-report.html  $DEMO/transactions-report.html
  SQL          deploy/local/postgres.sh psql
               SELECT detector, entity, score, contributions->0->>'feature' AS top_feature
                 FROM anomalies ORDER BY detected_at DESC LIMIT 20;
               SELECT detector, date_trunc('minute', detected_at) AS minute, count(*)
                 FROM anomalies GROUP BY 1, 2 ORDER BY 2 DESC;
  stream more  ./anomalyvae-tools generate sensors --rate 1000/s --duration 60 --topic demo.sensors ${KAFKA_PROPS[*]}
Stop everything:
  kill \$(cat $DEMO/serve.pid) \$(cat $DEMO/api.pid); deploy/local/kafka.sh stop; deploy/local/postgres.sh stop
EOF
