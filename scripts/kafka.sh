#!/usr/bin/env bash
# kafka.sh - start, stop and query the single-node Apache Kafka (KRaft) that tests run against.
#
#   scripts/kafka.sh up       resolve the jars once, format, start, wait; prints the bootstrap
#   scripts/kafka.sh down     stop it and remove its state
#   scripts/kafka.sh status   prints the bootstrap and exits 0 if running, 1 if not
#   scripts/kafka.sh stop     stop it (SIGTERM; `stop -9`: SIGKILL), keeping its data
#   scripts/kafka.sh start    start a stopped one again on its data, wait; prints the bootstrap
#   scripts/kafka.sh freeze   SIGSTOP it (a stalled broker: a long GC pause, a frozen VM);
#   scripts/kafka.sh thaw     SIGCONT it
#   scripts/kafka.sh ensure   for test runners: prints "BOOTSTRAP STARTED" where BOOTSTRAP
#                             is VEIL_KAFKA_BOOTSTRAP when set (nothing started), else the
#                             running broker's or one started now, and STARTED is 1 when
#                             this call started it (the caller then stops it with `down`)
#
# Environment: VEIL_KAFKA_PORT (39092), VEIL_KAFKA_CONTROLLER_PORT (port+1),
# VEIL_STATE (/tmp/veil-kafka: data, pid, log), VEIL_CACHE (~/.cache/veil: jars),
# VEIL_KAFKA_HEAP (-Xmx1g), VEIL_KAFKA_WAIT (60 s to answer).
# Only the bootstrap goes to stdout; progress and timings go to stderr.
set -euo pipefail

KAFKA_VERSION=4.1.1
here="$(cd "$(dirname "$0")/.." && pwd)"
cache="${VEIL_CACHE:-$HOME/.cache/veil}"
kafka_home="$cache/kafka-$KAFKA_VERSION"
libs="$kafka_home/libs"
state="${VEIL_STATE:-/tmp/veil-kafka}"
port="${VEIL_KAFKA_PORT:-39092}"
cport="${VEIL_KAFKA_CONTROLLER_PORT:-$((port + 1))}"
heap="${VEIL_KAFKA_HEAP:--Xmx1g}"
wait_s="${VEIL_KAFKA_WAIT:-60}"
bootstrap="127.0.0.1:$port"
pidfile="$state/kafka.pid"
logfile="$state/kafka.log"

say() { echo "kafka: $*" >&2; }
die() { say "$*"; exit 1; }

now_ms() { date +%s%3N; }
# "12.3" seconds from two millisecond stamps.
secs() { local d=$(($2 - $1)); printf '%d.%d' $((d / 1000)) $((d % 1000 / 100)); }

running_pid() {
  local pid
  [ -f "$pidfile" ] || return 1
  pid="$(cat "$pidfile" 2>/dev/null)" || return 1
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 1
  # A recycled pid must not pass for our broker.
  grep -qa 'kafka.Kafka' "/proc/$pid/cmdline" 2>/dev/null || return 1
  echo "$pid"
}

answers() { kcat -L -b "$bootstrap" -m 2 >/dev/null 2>&1; }

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# The jars are resolved once into the cache, which outlives work trees. A
# throwaway Maven repository keeps a single copy of them on disk.
resolve_jars() {
  local t0 tmp m2 mvnlog
  [ -f "$libs/.complete" ] && return 0
  command -v mvn >/dev/null || die "mvn not found (scripts/deps.sh installs it)"
  mkdir -p "$kafka_home"
  exec 9>"$kafka_home/.lock"
  flock 9
  if [ -f "$libs/.complete" ]; then exec 9>&-; return 0; fi
  say "resolving Apache Kafka $KAFKA_VERSION jars from Maven Central into $libs"
  t0="$(now_ms)"
  tmp="$kafka_home/libs.tmp"
  m2="$kafka_home/m2.tmp"
  mvnlog="$kafka_home/mvn.log"
  rm -rf "$tmp" "$m2"
  if ! mvn -q -B -Dstyle.color=never -f "$here/tests/kafka/pom.xml" \
      -Dmaven.repo.local="$m2" dependency:copy-dependencies \
      -DoutputDirectory="$tmp" >"$mvnlog" 2>&1; then
    tail -n 20 "$mvnlog" >&2
    rm -rf "$tmp" "$m2"
    die "Maven could not resolve the Kafka jars (log: $mvnlog)"
  fi
  say "downloaded $(du -sh "$m2" | cut -f1) with Maven's own plugins;" \
    "kept $(ls "$tmp"/*.jar | wc -l) jars, $(du -sh "$tmp" | cut -f1)," \
    "in $(secs "$t0" "$(now_ms)") s"
  rm -rf "$m2" "$libs"
  touch "$tmp/.complete"
  mv "$tmp" "$libs"
  exec 9>&-
}

# 16 random bytes as unpadded base64url: the 22-character cluster id
# StorageTool expects (what `kafka-storage.sh random-uuid` prints).
# An id that starts with '-' would be parsed as an option, so draw again.
cluster_id() {
  local id
  while :; do
    id=$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | cut -c1-22)
    [ "${id#-}" = "$id" ] && break
  done
  printf '%s\n' "$id"
}

write_config() {
  mkdir -p "$state/data"
  sed -e "s|@PORT@|$port|g" -e "s|@CPORT@|$cport|g" -e "s|@DATA@|$state/data|g" \
    "$here/tests/kafka/server.properties" >"$state/server.properties"
  # Kafka 4 logs through log4j2; INFO to stdout, which goes to the log file.
  cat >"$state/log4j2.properties" <<'EOF'
status = warn
appender.out.type = Console
appender.out.name = out
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.out.ref = out
logger.kafka.name = kafka
logger.kafka.level = INFO
logger.state.name = state.change.logger
logger.state.level = WARN
EOF
}

java_opts() {
  # shellcheck disable=SC2086
  echo $heap -Dlog4j2.configurationFile="$state/log4j2.properties" \
    -Djava.awt.headless=true -XX:+UseG1GC -XX:MaxGCPauseMillis=20
}

cmd_up() {
  local pid t0 t1 t2 deadline
  if pid="$(running_pid)"; then
    say "already running (pid $pid)"
    echo "$bootstrap"
    return 0
  fi
  command -v java >/dev/null || die "java not found (scripts/deps.sh installs it)"
  command -v kcat >/dev/null || die "kcat not found (scripts/deps.sh installs it)"
  resolve_jars
  if port_busy "$port" || port_busy "$cport"; then
    die "port $port or $cport on 127.0.0.1 is taken by something else" \
      "(set VEIL_KAFKA_PORT)"
  fi
  # Whatever a dead broker left behind is stale.
  rm -rf "$state"
  write_config

  t0="$(now_ms)"
  # shellcheck disable=SC2046
  if ! java $(java_opts) -cp "$libs/*" kafka.tools.StorageTool format \
      -t "$(cluster_id)" -c "$state/server.properties" >"$state/format.log" 2>&1; then
    cat "$state/format.log" >&2
    die "formatting the storage failed"
  fi
  t1="$(now_ms)"
  launch || { cmd_down; exit 1; }
  t2="$(now_ms)"
  say "up on $bootstrap (pid $(cat "$pidfile")) in $(secs "$t0" "$t2") s:" \
    "format $(secs "$t0" "$t1") s, start $(secs "$t1" "$t2") s; log: $logfile"
  echo "$bootstrap"
}

# Start the broker on the formatted state and wait until it answers.
# Returns 1 (said why) when it exits or does not answer in time.
launch() {
  local deadline
  # setsid: a Ctrl-C meant for the caller reaches the caller, whose trap
  # stops the broker in order; the broker itself never sees the terminal.
  # shellcheck disable=SC2046
  setsid java $(java_opts) -cp "$libs/*" kafka.Kafka "$state/server.properties" \
    >>"$logfile" 2>&1 </dev/null &
  echo $! >"$pidfile"

  deadline=$(($(date +%s) + wait_s))
  until answers; do
    if ! running_pid >/dev/null; then
      tail -n 30 "$logfile" >&2
      say "the broker exited during start (log: $logfile)"
      return 1
    fi
    if [ "$(date +%s)" -ge "$deadline" ]; then
      tail -n 30 "$logfile" >&2
      say "the broker did not answer on $bootstrap within ${wait_s} s"
      return 1
    fi
    sleep 0.2
  done
}

# Stop the broker (signal TERM or KILL), waiting up to 30 s; data stays.
stop_broker() {
  local pid deadline sig="${1:-TERM}"
  pid="$(running_pid)" || return 0
  kill -"$sig" "$pid" 2>/dev/null || true
  deadline=$(($(date +%s) + 30))
  while kill -0 "$pid" 2>/dev/null; do
    if [ "$(date +%s)" -ge "$deadline" ]; then
      say "pid $pid still running after 30 s; killing it"
      kill -KILL "$pid" 2>/dev/null || true
      break
    fi
    sleep 0.2
  done
  say "stopped (pid $pid, SIG$sig)"
}

cmd_stop() {
  case "${1:-}" in
    -9) stop_broker KILL ;;
    "") stop_broker TERM ;;
    *) die "usage: scripts/kafka.sh stop [-9]" ;;
  esac
}

cmd_start() {
  local pid t0
  if pid="$(running_pid)"; then
    say "already running (pid $pid)"
    echo "$bootstrap"
    return 0
  fi
  [ -f "$state/server.properties" ] && [ -d "$state/data" ] ||
    die "no stopped broker in $state to start (use up)"
  if port_busy "$port" || port_busy "$cport"; then
    die "port $port or $cport on 127.0.0.1 is taken by something else"
  fi
  t0="$(now_ms)"
  launch || exit 1
  say "started again on $bootstrap (pid $(cat "$pidfile")) in $(secs "$t0" "$(now_ms)") s"
  echo "$bootstrap"
}

cmd_signal() {
  local pid
  pid="$(running_pid)" || die "not running"
  kill -"$1" "$pid"
  say "$2 (pid $pid)"
}

cmd_ensure() {
  local b started=0
  if [ -n "${VEIL_KAFKA_BOOTSTRAP:-}" ]; then
    echo "$VEIL_KAFKA_BOOTSTRAP 0"
    return 0
  fi
  # A broker someone started by hand (make kafka-up) is theirs to stop.
  running_pid >/dev/null && answers || started=1
  b="$(cmd_up)" || exit 1
  echo "$b $started"
}

cmd_down() {
  stop_broker TERM
  rm -rf "$state"
}

cmd_status() {
  local pid
  if pid="$(running_pid)" && answers; then
    say "running (pid $pid)"
    echo "$bootstrap"
    return 0
  fi
  say "not running"
  return 1
}

case "${1:-}" in
  up) cmd_up ;;
  down) cmd_down ;;
  status) cmd_status ;;
  stop) cmd_stop "${2:-}" ;;
  start) cmd_start ;;
  ensure) cmd_ensure ;;
  freeze) cmd_signal STOP frozen ;;
  thaw) cmd_signal CONT thawed ;;
  *)
    echo "usage: scripts/kafka.sh up|down|status|stop [-9]|start|freeze|thaw|ensure" >&2
    exit 2
    ;;
esac
