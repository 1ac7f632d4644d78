package pstream.testclient;

import com.fasterxml.jackson.databind.JsonNode;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.AlterConfigOp;
import org.apache.kafka.clients.admin.AlterConfigsOptions;
import org.apache.kafka.clients.admin.Config;
import org.apache.kafka.clients.admin.ConfigEntry;
import org.apache.kafka.clients.admin.CreateTopicsOptions;
import org.apache.kafka.clients.admin.CreateTopicsResult;
import org.apache.kafka.clients.admin.DescribeClusterResult;
import org.apache.kafka.clients.admin.DescribeConfigsOptions;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.admin.TopicDescription;
import org.apache.kafka.common.KafkaFuture;
import org.apache.kafka.common.Node;
import org.apache.kafka.common.TopicPartitionInfo;
import org.apache.kafka.common.config.ConfigResource;
import org.apache.kafka.common.errors.TopicExistsException;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collection;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.Properties;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;

/**
 * {"bootstrap": "host:port", "ops": [{"op": NAME, ...}, ...]}: runs each operation with the Java Admin
 * client and prints one line per operation: {"event": NAME, "result": ...} or {"event": NAME, "error":
 * {...}} (an operation's error does not stop the ones after it).
 *
 * Operations:
 *   createTopics          {"topics": [{"name", "partitions"?, "replicationFactor"?, "configs"?}], "validateOnly"?}
 *                         result {topic: {"numPartitions", "replicationFactor", "configs": {name: value}}
 *                                 or {"error": {...}}}
 *   connectCreateOrFind   {"topics": [...as above]}: what Kafka Connect's TopicAdmin.createOrFindTopics does
 *                         (create; a TopicExistsException means the topic was found); result {"created": [...],
 *                         "existing": [...]}
 *   connectCleanupPolicy  {"topic"}: TopicAdmin.topicCleanupPolicy: describeConfigs without options, cleanup.policy
 *                         split on ","; result [policy, ...]
 *   describeConfigs       {"resources": [{"type": TOPIC|BROKER, "name"}], "synonyms"?, "documentation"?}
 *                         result {"TYPE:name": {config: {"value", "source", "readOnly", "sensitive", "type",
 *                                 "documentation", "synonyms": [[name, value, source], ...]}} or {"error": ...}}
 *   incrementalAlterConfigs {"resource": {"type", "name"}, "ops": [{"name", "op": SET|DELETE|APPEND|SUBTRACT,
 *                         "value"}], "validateOnly"?}; result "ok"
 *   describeTopics        {"topics": [...]}; result {topic: [{"partition", "leader", "replicas", "isr"}]}
 *   describeCluster       result {"clusterId", "controller", "nodes": [id, ...]}
 *   deleteTopics          {"topics": [...]}; result "ok"
 */
final class AdminOps {
    private AdminOps() {}

    static void run(JsonNode spec) throws Exception {
        Properties props = new Properties();
        props.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, Main.required(spec, "bootstrap"));
        props.put(AdminClientConfig.CLIENT_ID_CONFIG, "pstream-java-admin");
        props.put(AdminClientConfig.REQUEST_TIMEOUT_MS_CONFIG, "10000");
        props.put(AdminClientConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, "15000");
        try (Admin admin = Admin.create(props)) {
            for (JsonNode op : spec.get("ops")) {
                String name = Main.required(op, "op");
                try {
                    Main.emit(name, Main.map("result", apply(admin, name, op)));
                } catch (ExecutionException | RuntimeException e) {
                    Main.emit(name, Main.map("error", Main.error(e)));
                }
            }
        }
    }

    private static Object apply(Admin admin, String name, JsonNode op) throws Exception {
        switch (name) {
            case "createTopics": {
                CreateTopicsOptions options = new CreateTopicsOptions()
                    .validateOnly(op.path("validateOnly").asBoolean(false));
                CreateTopicsResult result = admin.createTopics(newTopics(op.get("topics")), options);
                Map<String, Object> out = new LinkedHashMap<>();
                for (Map.Entry<String, KafkaFuture<Void>> e : result.values().entrySet()) {
                    String topic = e.getKey();
                    try {
                        e.getValue().get(15, TimeUnit.SECONDS);
                        Map<String, String> configs = new LinkedHashMap<>();
                        for (ConfigEntry c : result.config(topic).get().entries()) {
                            configs.put(c.name(), c.value());
                        }
                        out.put(topic, Main.map("numPartitions", result.numPartitions(topic).get(),
                                                "replicationFactor", result.replicationFactor(topic).get(),
                                                "configs", configs));
                    } catch (ExecutionException ex) {
                        out.put(topic, Main.map("error", Main.error(ex)));
                    }
                }
                return out;
            }
            case "connectCreateOrFind": {
                // As org.apache.kafka.connect.util.TopicAdmin#createOrFindTopics
                Map<String, KafkaFuture<Void>> results = admin.createTopics(newTopics(op.get("topics")),
                    new CreateTopicsOptions().validateOnly(false)).values();
                List<String> created = new ArrayList<>();
                List<String> existing = new ArrayList<>();
                for (Map.Entry<String, KafkaFuture<Void>> e : results.entrySet()) {
                    try {
                        e.getValue().get(15, TimeUnit.SECONDS);
                        created.add(e.getKey());
                    } catch (ExecutionException ex) {
                        if (ex.getCause() instanceof TopicExistsException) {
                            existing.add(e.getKey());
                        } else {
                            throw ex;    // Connect throws a ConnectException here: the worker does not start
                        }
                    }
                }
                return Main.map("created", created, "existing", existing);
            }
            case "connectCleanupPolicy": {
                // As TopicAdmin#topicCleanupPolicy, which verifyTopicCleanupPolicyOnlyCompact checks
                String topic = Main.required(op, "topic");
                ConfigResource resource = new ConfigResource(ConfigResource.Type.TOPIC, topic);
                Config config = admin.describeConfigs(List.of(resource)).all().get(15, TimeUnit.SECONDS)
                    .get(resource);
                ConfigEntry entry = config == null ? null : config.get("cleanup.policy");
                if (entry == null || entry.value() == null) return List.of();
                return Arrays.stream(entry.value().split(",")).map(String::trim).toList();
            }
            case "describeConfigs": {
                DescribeConfigsOptions options = new DescribeConfigsOptions()
                    .includeSynonyms(op.path("synonyms").asBoolean(false))
                    .includeDocumentation(op.path("documentation").asBoolean(false));
                List<ConfigResource> resources = new ArrayList<>();
                for (JsonNode r : op.get("resources")) resources.add(resource(r));
                Map<ConfigResource, KafkaFuture<Config>> futures = admin.describeConfigs(resources, options).values();
                Map<String, Object> out = new LinkedHashMap<>();
                for (ConfigResource r : resources) {
                    String key = r.type() + ":" + r.name();
                    try {
                        Map<String, Object> entries = new LinkedHashMap<>();
                        for (ConfigEntry c : futures.get(r).get(15, TimeUnit.SECONDS).entries()) {
                            entries.put(c.name(), entry(c));
                        }
                        out.put(key, entries);
                    } catch (ExecutionException ex) {
                        out.put(key, Main.map("error", Main.error(ex)));
                    }
                }
                return out;
            }
            case "incrementalAlterConfigs": {
                ConfigResource r = resource(op.get("resource"));
                List<AlterConfigOp> ops = new ArrayList<>();
                for (JsonNode o : op.get("ops")) {
                    ops.add(new AlterConfigOp(new ConfigEntry(Main.required(o, "name"), Main.text(o, "value", null)),
                                              AlterConfigOp.OpType.valueOf(Main.text(o, "op", "SET"))));
                }
                Map<ConfigResource, Collection<AlterConfigOp>> request = Map.of(r, ops);
                admin.incrementalAlterConfigs(request,
                        new AlterConfigsOptions().validateOnly(op.path("validateOnly").asBoolean(false)))
                    .all().get(15, TimeUnit.SECONDS);
                return "ok";
            }
            case "describeTopics": {
                Map<String, Object> out = new LinkedHashMap<>();
                Map<String, TopicDescription> described = admin.describeTopics(strings(op.get("topics")))
                    .allTopicNames().get(15, TimeUnit.SECONDS);
                for (TopicDescription d : described.values()) {
                    List<Object> partitions = new ArrayList<>();
                    for (TopicPartitionInfo p : d.partitions()) {
                        partitions.add(Main.map("partition", p.partition(),
                                                "leader", p.leader() == null ? null : p.leader().id(),
                                                "replicas", p.replicas().stream().map(Node::id).toList(),
                                                "isr", p.isr().stream().map(Node::id).toList()));
                    }
                    out.put(d.name(), partitions);
                }
                return out;
            }
            case "describeCluster": {
                DescribeClusterResult c = admin.describeCluster();
                Node controller = c.controller().get(15, TimeUnit.SECONDS);
                return Main.map("clusterId", c.clusterId().get(15, TimeUnit.SECONDS),
                                "controller", controller == null ? null : controller.id(),
                                "nodes", c.nodes().get(15, TimeUnit.SECONDS).stream().map(Node::id).toList());
            }
            case "deleteTopics": {
                admin.deleteTopics(strings(op.get("topics"))).all().get(15, TimeUnit.SECONDS);
                return "ok";
            }
            default:
                throw new IllegalArgumentException("unknown admin op " + name);
        }
    }

    static Map<String, Object> entry(ConfigEntry c) {
        List<Object> synonyms = new ArrayList<>();
        for (ConfigEntry.ConfigSynonym s : c.synonyms()) {
            synonyms.add(Arrays.asList(s.name(), s.value(), s.source().name()));
        }
        return Main.map("value", c.value(), "source", c.source().name(), "readOnly", c.isReadOnly(),
                        "sensitive", c.isSensitive(), "type", c.type().name(), "documentation", c.documentation(),
                        "synonyms", synonyms);
    }

    private static ConfigResource resource(JsonNode r) {
        return new ConfigResource(ConfigResource.Type.valueOf(Main.required(r, "type")), Main.text(r, "name", ""));
    }

    private static List<NewTopic> newTopics(JsonNode topics) {
        List<NewTopic> out = new ArrayList<>();
        for (JsonNode t : topics) {
            JsonNode partitions = t.get("partitions");
            JsonNode rf = t.get("replicationFactor");
            NewTopic topic = new NewTopic(Main.required(t, "name"),
                partitions == null || partitions.isNull() ? Optional.empty() : Optional.of(partitions.asInt()),
                rf == null || rf.isNull() ? Optional.empty() : Optional.of((short) rf.asInt()));
            Map<String, String> configs = new LinkedHashMap<>();
            JsonNode c = t.get("configs");
            if (c != null) c.fields().forEachRemaining(e -> configs.put(e.getKey(), e.getValue().asText()));
            out.add(topic.configs(configs));
        }
        return out;
    }

    private static List<String> strings(JsonNode array) {
        List<String> out = new ArrayList<>();
        for (JsonNode n : array) out.add(n.asText());
        return out;
    }
}
