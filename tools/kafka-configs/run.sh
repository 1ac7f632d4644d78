#!/usr/bin/env bash
# Regenerates everything in /work/scratch/kafka-configs from Apache Kafka 3.9.2.
set -euo pipefail
OUT=${1:-${TMPDIR:-/tmp}/kafka-configs}; mkdir -p "$OUT/src"; cp "$(dirname "$0")"/*.java "$(dirname "$0")"/merge_and_check.py "$OUT/src/"
REF=${KAFKA_REFERENCE:-$(cd "$(dirname "$0")/../../.." && pwd)/shared/kafka-reference}
export KAFKA_LIBS=${KAFKA_LIBS:-$HOME/.cache/kafka-3.9.2}
[ -f "$KAFKA_LIBS/kafka_2.13-3.9.2.jar" ] || mvn -q -B -f "$REF/pom.xml" dependency:copy-dependencies -DoutputDirectory="$KAFKA_LIBS"
L4J=-Dlog4j.configuration=file:$REF/tools-log4j.properties
cd "$OUT/src"
rm -rf classes && mkdir classes
javac -d classes -cp "$KAFKA_LIBS/*" DumpConfigs.java DescribeConfigsDump.java

# 1+2: ConfigDef dumps (no broker needed)
java $L4J -cp "$KAFKA_LIBS/*:classes" DumpConfigs "$OUT"
# Kafka's own generated HTML docs (used for cross-checking)
java $L4J -cp "$KAFKA_LIBS/*" kafka.server.KafkaConfig > "$OUT/broker-configs-docs.html"
java $L4J -cp "$KAFKA_LIBS/*" org.apache.kafka.storage.internals.log.LogConfig > "$OUT/topic-configs-docs.html"

# 3: real broker
WORK=$(mktemp -d /tmp/kref.XXXXXX)
bash "$REF/start-kafka.sh" 127.0.0.1 19200 "$WORK" > "$WORK/stdout.log" 2>&1 &
BPID=$!
trap 'kill $BPID 2>/dev/null || true; wait $BPID 2>/dev/null || true; rm -rf "$WORK"' EXIT
for i in $(seq 90); do grep -q "Kafka Server started" "$WORK/server-19200.log" 2>/dev/null && break; sleep 1; done
java $L4J -cp "$KAFKA_LIBS/*:classes" DescribeConfigsDump 127.0.0.1 19200 "$OUT"
cp "$WORK/server-19200.properties" "$OUT/src/reference-server.properties"

# merge describe answers into topic.json / broker.json and cross-check against the HTML docs
cd "$OUT" && python3 src/merge_and_check.py
rm -rf "$OUT/src/classes"
