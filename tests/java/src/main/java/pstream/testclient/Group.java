package pstream.testclient;

import com.fasterxml.jackson.databind.JsonNode;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.ConsumerGroupDescription;
import org.apache.kafka.clients.admin.MemberDescription;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.ConsumerRecords;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;

import java.time.Duration;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.Set;
import java.util.TreeMap;
import java.util.TreeSet;
import java.util.concurrent.TimeUnit;
import java.util.function.BooleanSupplier;

/**
 * {"bootstrap", "topic", "group", "protocol": "consumer"|"classic", "partitions", "records", "more", "timeoutMs"}:
 * a consumer group of the Java consumer, with the group protocol given (group.protocol=consumer is KIP-848).
 *
 * 1. a producer writes `records` values "0".."n-1" (value i to partition i % partitions);
 * 2. member "a" subscribes, consumes them all and commits (commitSync after each poll) -> "consumed", then
 *    the group's committed offsets as the Admin client lists them -> "committed";
 * 3. member "b" joins; both keep polling until their assignments split the partitions between them
 *    -> "split" {"a": [partitions], "b": [...]};
 * 4. the producer writes `more` values; each member gets those of its own partitions -> "consumedAfterSplit";
 * 5. "b" closes (leaves the group); "a" keeps polling until it has every partition again -> "afterLeave";
 * 6. the Admin client describes the group -> "described" (or "describeError").
 * Each wait gives up after `timeoutMs` with an error naming what was last seen.
 */
final class Group {
    private Group() {}

    /** One member of the group: its own thread owns its KafkaConsumer (which is not thread-safe). */
    static final class Member implements Runnable {
        final String name;
        final Properties props;
        final String topic;
        final Thread thread;
        volatile boolean stop;
        volatile boolean closed;
        volatile Throwable error;
        volatile Set<Integer> assignment = Set.of();
        final List<int[]> records = Collections.synchronizedList(new ArrayList<>());   // [partition, value]

        Member(String name, Properties props, String topic) {
            this.name = name;
            this.props = props;
            this.topic = topic;
            this.thread = new Thread(this, "member-" + name);
            this.thread.setDaemon(true);
        }

        @Override
        public void run() {
            try (KafkaConsumer<String, String> consumer = new KafkaConsumer<>(props)) {
                consumer.subscribe(List.of(topic));
                while (!stop) {
                    ConsumerRecords<String, String> polled = consumer.poll(Duration.ofMillis(100));
                    Set<Integer> now = new TreeSet<>();
                    for (TopicPartition tp : consumer.assignment()) now.add(tp.partition());
                    assignment = now;
                    for (ConsumerRecord<String, String> r : polled) {
                        records.add(new int[] {r.partition(), Integer.parseInt(r.value())});
                    }
                    if (!polled.isEmpty()) consumer.commitSync(Duration.ofSeconds(10));
                }
            } catch (Throwable t) {
                error = t;
            } finally {
                closed = true;
            }
        }

        List<Integer> values() {
            synchronized (records) {
                return records.stream().map(r -> r[1]).sorted().toList();
            }
        }

        Map<Integer, List<Integer>> byPartition(int from) {
            Map<Integer, List<Integer>> out = new TreeMap<>();
            synchronized (records) {
                for (int[] r : records.subList(from, records.size())) {
                    out.computeIfAbsent(r[0], k -> new ArrayList<>()).add(r[1]);
                }
            }
            return out;
        }
    }

    static void run(JsonNode spec) throws Exception {
        String bootstrap = Main.required(spec, "bootstrap");
        String topic = Main.required(spec, "topic");
        String group = Main.required(spec, "group");
        String protocol = Main.text(spec, "protocol", "consumer");
        int partitions = Main.integer(spec, "partitions", 4);
        int records = Main.integer(spec, "records", 40);
        int more = Main.integer(spec, "more", 20);
        long timeoutMs = Main.integer(spec, "timeoutMs", 20_000);

        Properties pp = new Properties();
        pp.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        pp.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
        pp.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
        Properties ap = new Properties();
        ap.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        ap.put(AdminClientConfig.REQUEST_TIMEOUT_MS_CONFIG, "10000");
        ap.put(AdminClientConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, "15000");

        Member a = new Member("a", consumerProps(bootstrap, group, protocol, "a"), topic);
        Member b = new Member("b", consumerProps(bootstrap, group, protocol, "b"), topic);
        try (KafkaProducer<String, String> producer = new KafkaProducer<>(pp); Admin admin = Admin.create(ap)) {
            for (int i = 0; i < records; i++) {
                producer.send(new ProducerRecord<>(topic, i % partitions, null, Integer.toString(i))).get();
            }
            Main.emit("produced", Main.map("count", records));

            a.thread.start();
            await(timeoutMs, "member a consumed " + records + " records", () -> a.records.size() >= records, a);
            Main.emit("consumed", Main.map("member", "a", "values", a.values(), "assignment", a.assignment));

            // commitSync ran after the poll that returned the last records; the Admin client reads them back
            Map<Integer, Long> committed = new TreeMap<>();
            await(timeoutMs, "the group's committed offsets to cover " + records + " records", () -> {
                committed.clear();
                try {
                    Map<TopicPartition, OffsetAndMetadata> offsets = admin.listConsumerGroupOffsets(group)
                        .partitionsToOffsetAndMetadata().get(15, TimeUnit.SECONDS);
                    offsets.forEach((tp, o) -> { if (o != null) committed.put(tp.partition(), o.offset()); });
                } catch (Exception e) {
                    throw new RuntimeException(e);
                }
                return committed.values().stream().mapToLong(Long::longValue).sum() >= records;
            }, a);
            Main.emit("committed", Main.map("offsets", committed));

            b.thread.start();
            await(timeoutMs, "the partitions to be split between a and b", () -> {
                Set<Integer> sa = a.assignment, sb = b.assignment;
                Set<Integer> union = new TreeSet<>(sa);
                union.addAll(sb);
                return !sa.isEmpty() && !sb.isEmpty() && union.size() == partitions
                    && sa.size() + sb.size() == partitions;
            }, a, b);
            Main.emit("split", Main.map("a", a.assignment, "b", b.assignment));

            int fromA = a.records.size(), fromB = b.records.size();
            for (int i = records; i < records + more; i++) {
                producer.send(new ProducerRecord<>(topic, i % partitions, null, Integer.toString(i))).get();
            }
            await(timeoutMs, "a and b to consume the " + more + " new records",
                  () -> a.records.size() - fromA + b.records.size() - fromB >= more, a, b);
            Main.emit("consumedAfterSplit", Main.map("a", a.byPartition(fromA), "b", b.byPartition(fromB),
                                                     "assignmentA", a.assignment, "assignmentB", b.assignment));

            b.stop = true;
            b.thread.join(timeoutMs);
            if (b.error != null) throw new IllegalStateException("member b failed", b.error);
            await(timeoutMs, "member a to get every partition after b left",
                  () -> a.assignment.size() == partitions, a);
            Main.emit("afterLeave", Main.map("a", a.assignment, "bClosed", b.closed));

            try {
                ConsumerGroupDescription d = admin.describeConsumerGroups(List.of(group)).describedGroups()
                    .get(group).get(15, TimeUnit.SECONDS);
                List<Object> members = new ArrayList<>();
                for (MemberDescription m : d.members()) {
                    Set<Integer> owned = new TreeSet<>();
                    for (TopicPartition tp : m.assignment().topicPartitions()) owned.add(tp.partition());
                    members.add(Main.map("clientId", m.clientId(), "assignment", owned));
                }
                Main.emit("described", Main.map("state", String.valueOf(d.groupState()),
                                                "type", String.valueOf(d.type()), "members", members));
            } catch (Exception e) {
                Main.emit("describeError", Main.map("error", Main.error(e)));
            }
        } finally {
            a.stop = true;
            b.stop = true;
            a.thread.join(10_000);
            b.thread.join(10_000);
        }
        if (a.error != null) throw new IllegalStateException("member a failed", a.error);
        Main.emit("done", Main.map());
    }

    static Properties consumerProps(String bootstrap, String group, String protocol, String name) {
        Properties cp = new Properties();
        cp.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        cp.put(ConsumerConfig.GROUP_ID_CONFIG, group);
        cp.put(ConsumerConfig.CLIENT_ID_CONFIG, "member-" + name);
        cp.put(ConsumerConfig.GROUP_PROTOCOL_CONFIG, protocol);
        cp.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
        cp.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false");
        cp.put(ConsumerConfig.FETCH_MAX_WAIT_MS_CONFIG, "100");
        cp.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
        cp.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
        if (protocol.equals("classic")) {
            // Only the classic protocol has these on the client (with KIP-848 the broker sets the interval)
            cp.put(ConsumerConfig.HEARTBEAT_INTERVAL_MS_CONFIG, "300");
            cp.put(ConsumerConfig.SESSION_TIMEOUT_MS_CONFIG, "10000");
        }
        return cp;
    }

    /** Waits for condition; a member's failure or the timeout ends the scenario with what was last seen. */
    static void await(long timeoutMs, String what, BooleanSupplier condition, Member... members) throws Exception {
        long deadline = System.currentTimeMillis() + timeoutMs;
        while (true) {
            for (Member m : members) {
                if (m.error != null) throw new IllegalStateException("member " + m.name + " failed while waiting for "
                                                                     + what, m.error);
            }
            if (condition.getAsBoolean()) return;
            if (System.currentTimeMillis() > deadline) {
                StringBuilder seen = new StringBuilder();
                for (Member m : members) {
                    seen.append("; member ").append(m.name).append(" has ").append(m.assignment)
                        .append(" and consumed ").append(m.records.size());
                }
                throw new IllegalStateException("timed out after " + timeoutMs + " ms waiting for " + what + seen);
            }
            Thread.sleep(50);
        }
    }
}
