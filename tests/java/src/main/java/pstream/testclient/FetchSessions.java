package pstream.testclient;

import com.fasterxml.jackson.databind.JsonNode;

import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.Metric;
import org.apache.kafka.common.MetricName;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;

import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.TreeMap;

/**
 * {"bootstrap", "topic", "partitions", "records", "lingerMs", "late"}: a producer writes `records` values "0".."n-1"
 * (value i to partition i % partitions); a consumer assign()s every partition (no group), polls until it has
 * them all, then keeps polling for `lingerMs` (its fetches find nothing new: the broker's fetch session
 * answers them), and half way through a producer writes `late` more records to partition 1, which the
 * consumer must get too.
 *
 * Prints {"event": "produced", "count"}, {"event": "caughtUp", "values": [...], "perPartition": {p: n},
 * "fetches"}, {"event": "lingered", "late": [values], "fetches": the consumer's fetch-total,
 * "fetchesDuringLinger"}, then closes the consumer.
 */
final class FetchSessions {
    private FetchSessions() {}

    static void run(JsonNode spec) throws Exception {
        String bootstrap = Main.required(spec, "bootstrap");
        String topic = Main.required(spec, "topic");
        int partitions = Main.integer(spec, "partitions", 6);
        int records = Main.integer(spec, "records", 60);
        int lingerMs = Main.integer(spec, "lingerMs", 3000);
        int late = Main.integer(spec, "late", 5);

        Properties pp = new Properties();
        pp.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        pp.put(ProducerConfig.ACKS_CONFIG, "all");
        pp.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
        pp.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
        try (KafkaProducer<String, String> producer = new KafkaProducer<>(pp)) {
            for (int i = 0; i < records; i++) {
                producer.send(new ProducerRecord<>(topic, i % partitions, null, Integer.toString(i))).get();
            }
            Main.emit("produced", Main.map("count", records));

            Properties cp = new Properties();
            cp.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
            cp.put(ConsumerConfig.CLIENT_ID_CONFIG, "pstream-java-fetch-sessions");
            cp.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
            cp.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false");
            cp.put(ConsumerConfig.FETCH_MAX_WAIT_MS_CONFIG, "100");
            cp.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
            cp.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
            try (KafkaConsumer<String, String> consumer = new KafkaConsumer<>(cp)) {
                List<TopicPartition> assigned = new ArrayList<>();
                for (int p = 0; p < partitions; p++) assigned.add(new TopicPartition(topic, p));
                consumer.assign(assigned);
                List<Integer> values = new ArrayList<>();
                Map<Integer, Integer> perPartition = new TreeMap<>();
                long deadline = System.currentTimeMillis() + 15_000;
                while (values.size() < records && System.currentTimeMillis() < deadline) {
                    for (ConsumerRecord<String, String> r : consumer.poll(Duration.ofMillis(200))) {
                        values.add(Integer.parseInt(r.value()));
                        perPartition.merge(r.partition(), 1, Integer::sum);
                    }
                }
                double fetchesAtCatchUp = fetchTotal(consumer);
                Main.emit("caughtUp", Main.map("values", values, "perPartition", perPartition,
                                               "fetches", fetchesAtCatchUp));
                if (values.size() < records) {
                    throw new IllegalStateException("consumed " + values.size() + " of " + records + " in 15 s");
                }

                List<Integer> lateValues = new ArrayList<>();
                long start = System.currentTimeMillis();
                boolean sentLate = false;
                while (System.currentTimeMillis() - start < lingerMs || lateValues.size() < late) {
                    if (!sentLate && System.currentTimeMillis() - start >= lingerMs / 2) {
                        for (int i = 0; i < late; i++) {
                            producer.send(new ProducerRecord<>(topic, 1 % partitions, null,
                                                               Integer.toString(records + i))).get();
                        }
                        sentLate = true;
                    }
                    for (ConsumerRecord<String, String> r : consumer.poll(Duration.ofMillis(200))) {
                        lateValues.add(Integer.parseInt(r.value()));
                    }
                    if (System.currentTimeMillis() - start > lingerMs + 15_000) {
                        throw new IllegalStateException("the late records did not come: got " + lateValues);
                    }
                }
                double fetches = fetchTotal(consumer);
                Main.emit("lingered", Main.map("late", lateValues, "fetches", fetches,
                                               "fetchesDuringLinger", fetches - fetchesAtCatchUp));
            }
        }
    }

    /** The consumer's own count of fetch requests (consumer-fetch-manager-metrics fetch-total). */
    static double fetchTotal(KafkaConsumer<?, ?> consumer) {
        for (Map.Entry<MetricName, ? extends Metric> e : consumer.metrics().entrySet()) {
            MetricName n = e.getKey();
            if (n.group().equals("consumer-fetch-manager-metrics") && n.name().equals("fetch-total")
                    && !n.tags().containsKey("topic")) {
                return ((Number) e.getValue().metricValue()).doubleValue();
            }
        }
        return -1;
    }
}
