#!/usr/bin/env bash
# A live CQL cluster for souk's ScyllaDB backend tests: Apache Cassandra 5.0
# from Maven Central, N nodes on 127.0.0.1..N (CQL on port 9042 of each).
#
#   bash storage/scylla/cluster.sh start [--nodes N]   # N = 1 by default
#   bash storage/scylla/cluster.sh stop
#   bash storage/scylla/cluster.sh status
#
# `start` prints the SOUK_SCYLLA_NODES line to export. Needs Java 17 and
# Maven (the first start downloads about 70 MB into SOUK_CASSANDRA_HOME,
# by default ~/.cache/souk/cassandra-5.0.9). Nodes keep their data and logs
# under SOUK_CLUSTER_DIR (/tmp/souk-cluster); `stop` removes it.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
version=5.0.9
home=${SOUK_CASSANDRA_HOME:-$HOME/.cache/souk/cassandra-$version}
state=${SOUK_CLUSTER_DIR:-/tmp/souk-cluster}
heap=${SOUK_CASSANDRA_HEAP:-768m}
start_timeout_s=${SOUK_CASSANDRA_START_TIMEOUT:-180}

say() { printf 'cluster: %s\n' "$*" >&2; }
fail() { say "$*"; exit 1; }

fetch() {
  [ -f "$home/complete" ] && return
  command -v mvn >/dev/null || fail "needs Maven (apt-get install maven) to fetch Cassandra $version"
  say "fetching cassandra-all $version and its dependencies into $home"
  mkdir -p "$home/lib"
  mvn -B -ntp -q -f "$here/cassandra/pom.xml" dependency:copy-dependencies \
    -DoutputDirectory="$home/lib" || fail "mvn could not fetch Cassandra $version"
  touch "$home/complete"
}

# The JVM flags of Cassandra's conf/jvm17-server.options (the module
# openings Cassandra needs on Java 17), a small heap, and the node's files.
jvm_flags() {
  local node=$1 dir=$2
  echo "-Xms$heap -Xmx$heap -XX:+UseG1GC -Xss512k -XX:+ExitOnOutOfMemoryError"
  echo "-Djdk.attach.allowAttachSelf=true -Dio.netty.tryReflectionSetAccessible=true"
  local exports="java.base/jdk.internal.misc java.management.rmi/com.sun.jmx.remote.internal.rmi
    java.rmi/sun.rmi.registry java.rmi/sun.rmi.server java.sql/java.sql java.base/java.lang.ref
    jdk.unsupported/sun.misc jdk.compiler/com.sun.tools.javac.file jdk.attach/sun.tools.attach"
  local opens="java.base/java.lang.module java.base/jdk.internal.loader java.base/jdk.internal.ref
    java.base/jdk.internal.reflect java.base/jdk.internal.math java.base/jdk.internal.module
    java.base/jdk.internal.util.jar jdk.management/com.sun.management.internal java.base/sun.nio.ch
    java.base/java.io java.base/java.lang.reflect jdk.compiler/com.sun.tools.javac java.base/java.lang
    java.base/java.util java.base/java.nio java.base/java.util.concurrent java.base/java.util.concurrent.atomic"
  for module in $exports; do echo "--add-exports $module=ALL-UNNAMED"; done
  for module in $opens; do echo "--add-opens $module=ALL-UNNAMED"; done
  echo "-Dcassandra.config=file://$dir/cassandra.yaml -Dcassandra.storagedir=$dir"
  echo "-Dcassandra.logdir=$dir -Dlogback.configurationFile=$here/cassandra/logback.xml"
  echo "-Dcassandra-foreground=true -Dcassandra.jmx.local.port=$((7199 + node))"
  # A test cluster need not wait for gossip to settle or a ring to form.
  echo "-Dcassandra.skip_wait_for_gossip_to_settle=0 -Dcassandra.ring_delay_ms=1000"
  echo "-Dcassandra.superuser_setup_delay_ms=0"
}

# Whether something accepts TCP connections on ADDRESS:PORT.
listening() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }

start_node() {
  local node=$1 seeds=$2
  local address=127.0.0.$node dir=$state/node$node
  if [ -f "$dir/pid" ] && kill -0 "$(cat "$dir/pid")" 2>/dev/null; then
    say "node $node ($address) is already running"
    return
  fi
  mkdir -p "$dir"
  sed -e "s|@NODE_ADDRESS@|$address|g" -e "s|@SEEDS@|$seeds|g" -e "s|@NODE_DIR@|$dir|g" \
    "$here/cassandra/cassandra.yaml" >"$dir/cassandra.yaml"
  say "starting node $node on $address (log: $dir/system.log, $dir/stdout.log)"
  # shellcheck disable=SC2046
  nohup java $(jvm_flags "$node" "$dir") -cp "$home/lib/*" \
    org.apache.cassandra.service.CassandraDaemon >"$dir/stdout.log" 2>&1 &
  echo $! >"$dir/pid"
  local waited=0
  until listening "$address" 9042; do
    kill -0 "$(cat "$dir/pid")" 2>/dev/null ||
      { tail -n 30 "$dir/stdout.log" >&2; fail "node $node exited while starting"; }
    [ "$waited" -ge "$start_timeout_s" ] &&
      { tail -n 30 "$dir/stdout.log" >&2; fail "node $node did not open CQL within $start_timeout_s s"; }
    sleep 1
    waited=$((waited + 1))
  done
  say "node $node is up after ${waited} s"
}

start() {
  local nodes=1
  while [ $# -gt 0 ]; do
    case $1 in
      --nodes) nodes=$2; shift 2 ;;
      *) fail "unknown option $1" ;;
    esac
  done
  command -v java >/dev/null || fail "needs Java 17 or newer"
  fetch
  mkdir -p "$state"
  # Nodes join one at a time, as Cassandra requires; the first is the seed.
  local list=()
  for node in $(seq 1 "$nodes"); do
    start_node "$node" "127.0.0.1:7000"
    list+=("127.0.0.$node:9042")
  done
  local joined
  joined=$(IFS=,; echo "${list[*]}")
  echo "$joined" >"$state/nodes"
  say "up: $nodes node(s)"
  echo "SOUK_SCYLLA_NODES=$joined"
}

stop() {
  [ -d "$state" ] || { say "no cluster under $state"; return; }
  for pidfile in "$state"/node*/pid; do
    [ -f "$pidfile" ] || continue
    local pid
    pid=$(cat "$pidfile")
    if kill -0 "$pid" 2>/dev/null; then
      kill "$pid"
      for _ in $(seq 30); do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
      kill -9 "$pid" 2>/dev/null || true
    fi
  done
  rm -rf "$state"
  say "stopped; removed $state"
}

status() {
  [ -f "$state/nodes" ] || { say "not running"; return 1; }
  for pidfile in "$state"/node*/pid; do
    local node=${pidfile%/pid}
    node=${node##*node}
    if kill -0 "$(cat "$pidfile")" 2>/dev/null && listening "127.0.0.$node" 9042; then
      say "node $node (127.0.0.$node:9042) up"
    else
      say "node $node (127.0.0.$node:9042) down"
    fi
  done
  echo "SOUK_SCYLLA_NODES=$(cat "$state/nodes")"
}

case ${1:-} in
  start) shift; start "$@" ;;
  stop) stop ;;
  status) status ;;
  *) fail "usage: cluster.sh start [--nodes N] | stop | status" ;;
esac
