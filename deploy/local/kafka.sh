#!/usr/bin/env bash
# A local Apache Kafka 0.9.0.1 broker + ZooKeeper 3.4.6 on 127.0.0.1, for development and tests.
#   deploy/local/kafka.sh start                        start (idempotent) and wait until ready
#   deploy/local/kafka.sh stop                         stop the broker and ZooKeeper this data dir started
#   deploy/local/kafka.sh status                       exit 0 when running, 3 when stopped
#   deploy/local/kafka.sh create-topic NAME [PARTITIONS]   (default 1; waits until every partition has a leader)
#   deploy/local/kafka.sh delete-topic NAME
# Environment:
#   KAFKA_PORT (9092), ZK_PORT (2181)       listening ports; commands other than start default to the
#                                           ports the instance in this data dir was started with
#   ANOMALYVAE_DATA (<repo>/.data)          state lives in $ANOMALYVAE_DATA/kafka (logs, pids, data)
#   ANOMALYVAE_CACHE (~/.cache/anomalyvae)  where deploy/local/setup.sh unpacked Kafka
#   KAFKA_START_TIMEOUT (60)                seconds to wait for readiness
#   KAFKA_AUTO_CREATE_TOPICS (false)        broker auto.create.topics.enable. Off by default: topics are
#                                           created explicitly (create-topic), so a misspelt topic is an
#                                           error rather than a new empty topic. Kafka 0.9 also auto-creates
#                                           a topic on a mere metadata request when this is on.
#   KAFKA_BOOTSTRAP, ZK_CONNECT             host:port for create/delete-topic against another instance
#   KAFKA_SSL_PORT (KAFKA_PORT + 1)         the broker's TLS listener (SSL://127.0.0.1:KAFKA_SSL_PORT)
# TLS: start makes a local CA and a broker certificate for 127.0.0.1/localhost with openssl on first use (in
# $ANOMALYVAE_DATA/kafka/tls; never committed), opens an SSL listener with it next to the plaintext one, and writes
# the CA certificate to $ANOMALYVAE_DATA/kafka-ca.crt and the TLS bootstrap address to $ANOMALYVAE_DATA/kafka-ssl.
# Clients: security.protocol=ssl, ssl.ca.location=<that CA file> (librdkafka verifies the broker's host name).
# Settings: offsets.topic.replication.factor=1 and offsets.topic.num.partitions=8 (single broker),
# group.max.session.timeout.ms=300000 (librdkafka's 45 s default session timeout is above 0.9's 30 s
# maximum), delete.topic.enable=true, controlled.shutdown.enable=false (nothing to hand over to).
# The stock bin/*.sh scripts fail on Java 17, so the JVMs are started directly with `java -cp`.
# Clients must set api.version.request=false and broker.version.fallback=0.9.0.1 (librdkafka).
set -euo pipefail
AV_TAG=kafka
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

KAFKA_HOME="$AV_CACHE/kafka"
DIR="$AV_DATA/kafka"
CONF="$DIR/config"
RUN="$DIR/run"
ZK_PID="$RUN/zookeeper.pid"
BROKER_PID="$RUN/broker.pid"
ZK_LOG="$DIR/zookeeper.log"
BROKER_LOG="$DIR/broker.log"
# The config paths are part of each JVM's command line: they identify "our" processes.
ZK_MARKER="$CONF/zookeeper.properties"
BROKER_MARKER="$CONF/server.properties"
START_TIMEOUT="${KAFKA_START_TIMEOUT:-60}"
OFFSETS_PARTITIONS=8

usage() {
  sed -n '2,7p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
  exit 2
}

# Ports: start uses the environment or the defaults; the other commands prefer the environment,
# then the ports the running instance was started with (recorded in $RUN/ports), then the defaults.
resolve_ports() {
  local rec_kafka="" rec_zk=""
  if [ "$1" != start ] && [ -f "$RUN/ports" ]; then
    read -r rec_kafka rec_zk <"$RUN/ports" || true
  fi
  KAFKA_PORT="${KAFKA_PORT:-${rec_kafka:-9092}}"
  KAFKA_SSL_PORT="${KAFKA_SSL_PORT:-$((KAFKA_PORT + 1))}"
  ZK_PORT="${ZK_PORT:-${rec_zk:-2181}}"
  BOOTSTRAP="${KAFKA_BOOTSTRAP:-127.0.0.1:$KAFKA_PORT}"
  ZK_CONNECT="${ZK_CONNECT:-127.0.0.1:$ZK_PORT}"
}

require_kafka_home() {
  [ -f "$KAFKA_HOME/libs/kafka_2.11-0.9.0.1.jar" ] ||
    av_die "Kafka 0.9.0.1 is not in $KAFKA_HOME; run deploy/local/setup.sh first"
  command -v java >/dev/null 2>&1 || av_die "java is not on PATH; run deploy/local/setup.sh first"
  command -v kcat >/dev/null 2>&1 || av_die "kcat is not on PATH; run deploy/local/setup.sh first"
}

# Every jar in libs/ except the sources/javadoc/scaladoc/test jars (and their signatures).
classpath() {
  local jar cp=""
  for jar in "$KAFKA_HOME"/libs/*.jar; do
    case "$jar" in
      *-sources.jar | *-javadoc.jar | *-scaladoc.jar | *-test.jar) continue ;;
    esac
    cp="${cp:+$cp:}$jar"
  done
  printf '%s\n' "$cp"
}

# ensure_tls: CA + broker certificate (PKCS12 keystore, which Kafka 0.9 reads through Java's KeyStore), made once.
TLS_DIR="$DIR/tls"
TLS_PASSWORD=anomalyvae-local # protects only a throw-away development keystore
ensure_tls() {
  if [ ! -f "$TLS_DIR/broker.p12" ] || [ ! -f "$TLS_DIR/ca.crt" ]; then
    av_say "generating a local CA and broker certificate in $TLS_DIR"
    local tmp="$TLS_DIR.tmp"
    av_make_local_tls "$TLS_DIR" "AnomalyVae local Kafka CA" broker
    openssl pkcs12 -export -in "$tmp/broker.crt" -inkey "$tmp/broker.key" -name broker -passout "pass:$TLS_PASSWORD" \
      -out "$tmp/broker.p12" || av_die "openssl could not make the broker keystore"
    rm -f "$tmp/broker.key"
    rm -rf "$TLS_DIR"
    mv "$tmp" "$TLS_DIR"
  fi
  cp "$TLS_DIR/ca.crt" "$AV_DATA/kafka-ca.crt.tmp" && mv -f "$AV_DATA/kafka-ca.crt.tmp" "$AV_DATA/kafka-ca.crt"
  printf '127.0.0.1:%s\n' "$KAFKA_SSL_PORT" >"$AV_DATA/kafka-ssl"
}

write_configs() {
  mkdir -p "$CONF" "$RUN" "$DIR/zookeeper" "$DIR/kafka-logs"
  ensure_tls
  cat >"$CONF/zookeeper.properties" <<EOF
# Generated by deploy/local/kafka.sh; rewritten on every start.
dataDir=$DIR/zookeeper
clientPort=$ZK_PORT
clientPortAddress=127.0.0.1
maxClientCnxns=0
tickTime=2000
EOF
  cat >"$CONF/server.properties" <<EOF
# Generated by deploy/local/kafka.sh; rewritten on every start.
broker.id=0
listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT,SSL://127.0.0.1:$KAFKA_SSL_PORT
ssl.keystore.type=PKCS12
ssl.keystore.location=$TLS_DIR/broker.p12
ssl.keystore.password=$TLS_PASSWORD
ssl.key.password=$TLS_PASSWORD
ssl.client.auth=none
ssl.enabled.protocols=TLSv1.2
log.dirs=$DIR/kafka-logs
zookeeper.connect=127.0.0.1:$ZK_PORT
zookeeper.connection.timeout.ms=15000
num.partitions=1
auto.create.topics.enable=${KAFKA_AUTO_CREATE_TOPICS:-false}
delete.topic.enable=true
offsets.topic.replication.factor=1
offsets.topic.num.partitions=$OFFSETS_PARTITIONS
group.max.session.timeout.ms=300000
controlled.shutdown.enable=false
EOF
  write_log4j
  printf '%s %s\n' "$KAFKA_PORT" "$ZK_PORT" >"$RUN/ports"
}

# Server log format matches Kafka's own, so "started (kafka.server.KafkaServer)" appears verbatim.
write_log4j() {
  mkdir -p "$CONF"
  cat >"$CONF/log4j.properties" <<'EOF'
log4j.rootLogger=INFO, stdout
log4j.appender.stdout=org.apache.log4j.ConsoleAppender
log4j.appender.stdout.layout=org.apache.log4j.PatternLayout
log4j.appender.stdout.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.logger.kafka.request.logger=WARN
log4j.logger.state.change.logger=WARN
log4j.logger.org.I0Itec.zkclient=WARN
log4j.logger.org.apache.zookeeper.ZooKeeper=WARN
log4j.logger.org.apache.zookeeper.ClientCnxn=WARN
EOF
  cat >"$CONF/tools-log4j.properties" <<'EOF'
log4j.rootLogger=WARN, stderr
log4j.appender.stderr=org.apache.log4j.ConsoleAppender
log4j.appender.stderr.layout=org.apache.log4j.PatternLayout
log4j.appender.stderr.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.appender.stderr.Target=System.err
EOF
}

kcat_0_9() {
  # -m: metadata timeout (s). The two -X settings are what librdkafka needs to talk to a 0.9 broker.
  timeout 10 kcat -b "$BOOTSTRAP" -X api.version.request=false -X broker.version.fallback=0.9.0.1 -m 5 "$@"
}

# zk_cmd WORD: a ZooKeeper four-letter command (ruok, dump, ...); prints the answer.
zk_cmd() {
  timeout 3 bash -c 'exec 3<>"/dev/tcp/$1/$2" && printf %s "$3" >&3 && cat <&3' _ \
    "${ZK_CONNECT%:*}" "${ZK_CONNECT##*:}" "$1" 2>/dev/null
}

zk_alive() { av_pid_alive "$ZK_PID" "$ZK_MARKER"; }
broker_alive() { av_pid_alive "$BROKER_PID" "$BROKER_MARKER"; }
zk_ready() { [ "$(zk_cmd ruok)" = imok ]; }
broker_metadata_ok() { kcat_0_9 -L >/dev/null 2>&1; }
broker_started_logged() { grep -qF 'started (kafka.server.KafkaServer)' "$BROKER_LOG" 2>/dev/null; }
broker_ready() { broker_started_logged && broker_metadata_ok; }
# An ephemeral broker registration left by a broker that died lingers until its ZooKeeper session
# expires (zookeeper.session.timeout.ms, 6 s); a new broker started before then fails to register.
stale_registration() { zk_cmd dump | grep -qF '/brokers/ids/0'; }

# topic_leaders NAME: prints "<partitions> <partitions with a leader>" from full cluster metadata.
# (Asking for the one topic instead would auto-create it on 0.9 when auto-create is on.)
topic_leaders() {
  kcat_0_9 -L 2>/dev/null | awk -v t="topic \"$1\" with" '
    index($0, t) == 3 { inside = 1; total = $4; next }
    /^  topic "/ { inside = 0 }
    inside && /^    partition [0-9]+, leader [0-9]+,/ { led++ }
    END { if (total != "") print total + 0, led + 0 }'
}
topic_absent() { [ -z "$(topic_leaders "$1")" ]; }
topic_all_led() {
  local got
  got=$(topic_leaders "$1")
  [ -n "$got" ] && [ "${got% *}" = "${got#* }" ] && [ "${got% *}" -gt 0 ]
}

# run_tool CLASS ARGS...: a Kafka command-line tool (TopicCommand), with quick-start JVM flags.
run_tool() {
  write_log4j
  java -Xmx128m -XX:TieredStopAtLevel=1 -XX:+UseSerialGC -Djava.awt.headless=true \
    -Dlog4j.configuration="file:$CONF/tools-log4j.properties" -cp "$(classpath)" "$@"
}

fail_start() {
  local what=$1 log=$2
  av_log_tail "$log" 40
  # Leave nothing half-started behind.
  [ "$started_broker" = 1 ] && av_stop_pid "$BROKER_PID" "$BROKER_MARKER" broker 10
  [ "$started_zk" = 1 ] && av_stop_pid "$ZK_PID" "$ZK_MARKER" zookeeper 10
  av_die "$what"
}

wait_broker_ready() {
  local deadline=$((SECONDS + START_TIMEOUT))
  while ! broker_ready; do
    broker_alive || fail_start "broker exited during start-up (log: $BROKER_LOG)" "$BROKER_LOG"
    [ "$SECONDS" -lt "$deadline" ] ||
      fail_start "broker not ready after ${START_TIMEOUT}s (no metadata answer on $BOOTSTRAP or no 'started' in $BROKER_LOG)" "$BROKER_LOG"
    sleep 0.2
  done
}

cmd_start() {
  require_kafka_home
  local t0
  t0=$(av_now_ms)
  started_zk=0
  started_broker=0
  if zk_alive && broker_alive && broker_ready; then
    av_say "already running on $BOOTSTRAP (zookeeper $ZK_CONNECT)"
    return 0
  fi
  mkdir -p "$RUN"

  if zk_alive; then
    av_say "zookeeper already running (pid $(av_pid_read "$ZK_PID"))"
  else
    av_require_port_free 127.0.0.1 "$ZK_PORT" zookeeper
    if broker_alive; then
      # Our broker outlived its ZooKeeper; restart both rather than trust its session state.
      av_say "broker runs without its zookeeper; restarting it"
      av_stop_pid "$BROKER_PID" "$BROKER_MARKER" broker 30
    fi
    write_configs
    [ -f "$ZK_LOG" ] && mv -f "$ZK_LOG" "$ZK_LOG.1"
    av_start_detached "$ZK_PID" "$ZK_LOG" java -Xmx128m -XX:+UseG1GC -Djava.awt.headless=true \
      -Dlog4j.configuration="file:$CONF/log4j.properties" -cp "$(classpath)" \
      org.apache.zookeeper.server.quorum.QuorumPeerMain "$ZK_MARKER"
    started_zk=1
    av_wait_until 30 zk_ready || fail_start "zookeeper did not answer on $ZK_CONNECT within 30s" "$ZK_LOG"
    av_say "zookeeper up on $ZK_CONNECT (pid $(av_pid_read "$ZK_PID"))"
  fi

  if broker_alive; then
    av_say "broker process already running (pid $(av_pid_read "$BROKER_PID")); waiting until ready"
  else
    av_require_port_free 127.0.0.1 "$KAFKA_PORT" broker
    av_require_port_free 127.0.0.1 "$KAFKA_SSL_PORT" "broker (TLS)"
    [ "$started_zk" = 1 ] || write_configs
    if stale_registration; then
      av_say "waiting for the previous broker's ZooKeeper session to expire"
      av_wait_until 30 av_not stale_registration || fail_start "stale /brokers/ids/0 registration did not expire" "$ZK_LOG"
    fi
    [ -f "$BROKER_LOG" ] && mv -f "$BROKER_LOG" "$BROKER_LOG.1"
    av_start_detached "$BROKER_PID" "$BROKER_LOG" java -Xmx256m -XX:+UseG1GC -Djava.awt.headless=true \
      -Dlog4j.configuration="file:$CONF/log4j.properties" -cp "$(classpath)" \
      kafka.Kafka "$BROKER_MARKER"
    started_broker=1
  fi
  wait_broker_ready

  # Consumer groups need the offsets topic, which 0.9 creates on first use; until its partitions
  # have leaders, group coordinator lookups fail. A metadata request for it triggers the creation
  # now, so the first consumer group of a test or demo does not have to wait for it.
  kcat_0_9 -L -t __consumer_offsets >/dev/null 2>&1 || true
  av_wait_until 30 topic_all_led __consumer_offsets ||
    fail_start "offsets topic __consumer_offsets got no leaders within 30s" "$BROKER_LOG"
  av_say "broker ready on $BOOTSTRAP (pid $(av_pid_read "$BROKER_PID"), zookeeper $ZK_CONNECT) in $(($(av_now_ms) - t0)) ms"
}

cmd_stop() {
  local any=0
  if broker_alive; then
    any=1
    av_stop_pid "$BROKER_PID" "$BROKER_MARKER" broker 30
    av_say "broker stopped"
  fi
  rm -f "$BROKER_PID"
  if zk_alive; then
    any=1
    av_stop_pid "$ZK_PID" "$ZK_MARKER" zookeeper 15
    av_say "zookeeper stopped"
  fi
  rm -f "$ZK_PID"
  [ "$any" = 1 ] || av_say "not running"
}

cmd_status() {
  local zk="stopped" broker="stopped" ok=1
  if zk_alive; then
    if zk_ready; then zk="running (pid $(av_pid_read "$ZK_PID"), $ZK_CONNECT)"; else
      zk="process $(av_pid_read "$ZK_PID") alive but not answering on $ZK_CONNECT"
      ok=0
    fi
  else
    ok=0
  fi
  if broker_alive; then
    if broker_metadata_ok; then broker="running (pid $(av_pid_read "$BROKER_PID"), $BOOTSTRAP)"; else
      broker="process $(av_pid_read "$BROKER_PID") alive but not answering on $BOOTSTRAP"
      ok=0
    fi
  else
    ok=0
  fi
  if [ "$ok" = 1 ]; then
    av_say "running: broker $broker; zookeeper $zk"
    return 0
  fi
  av_say "not running: broker $broker; zookeeper $zk"
  return 3
}

validate_topic() {
  [ -n "$1" ] || av_die "topic name missing"
  [ "${#1}" -le 249 ] || av_die "topic name longer than 249 characters"
  case "$1" in
    . | .. | *[!a-zA-Z0-9._-]*) av_die "invalid topic name '$1' (allowed: letters, digits, '.', '_', '-')" ;;
  esac
}

cmd_create_topic() {
  local name=${1:-} partitions=${2:-1} got
  validate_topic "$name"
  case "$partitions" in '' | *[!0-9]* | 0) av_die "partitions must be a positive integer, got '$partitions'" ;; esac
  require_kafka_home
  broker_metadata_ok || av_die "no broker answers on $BOOTSTRAP; start it with '$0 start'"
  got=$(topic_leaders "$name")
  if [ -n "$got" ]; then
    [ "${got% *}" = "$partitions" ] ||
      av_die "topic '$name' already exists with ${got% *} partitions (asked for $partitions)"
    av_say "topic '$name' already exists with $partitions partitions"
  else
    local out
    if ! out=$(run_tool kafka.admin.TopicCommand --zookeeper "$ZK_CONNECT" --create --topic "$name" \
      --partitions "$partitions" --replication-factor 1 2>&1); then
      printf '%s\n' "$out" >&2
      av_die "creating topic '$name' failed"
    fi
  fi
  av_wait_until 30 topic_all_led "$name" ||
    av_die "topic '$name' partitions have no leader after 30s (metadata: $(topic_leaders "$name"))"
  av_say "topic '$name' ready ($partitions partitions)"
}

cmd_delete_topic() {
  local name=${1:-} out
  validate_topic "$name"
  require_kafka_home
  broker_metadata_ok || av_die "no broker answers on $BOOTSTRAP; start it with '$0 start'"
  if topic_absent "$name"; then
    av_say "topic '$name' does not exist"
    return 0
  fi
  if ! out=$(run_tool kafka.admin.TopicCommand --zookeeper "$ZK_CONNECT" --delete --topic "$name" 2>&1); then
    printf '%s\n' "$out" >&2
    av_die "deleting topic '$name' failed"
  fi
  av_wait_until 30 topic_absent "$name" || av_die "topic '$name' still listed 30s after deletion"
  av_say "topic '$name' deleted"
}

[ $# -ge 1 ] || usage
command=$1
shift
resolve_ports "$command"
av_lock "$RUN/lock"
case "$command" in
  start) cmd_start ;;
  stop) cmd_stop ;;
  status) cmd_status ;;
  create-topic) cmd_create_topic "$@" ;;
  delete-topic) cmd_delete_topic "$@" ;;
  *) usage ;;
esac
