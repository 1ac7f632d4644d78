// Talks raw Kafka protocol (using kafka-clients' generated message classes) to a broker:
// CreateTopics (latest version) for two topics, then DescribeConfigs (latest version, v4 in 3.9.2)
// with include_synonyms=true and include_documentation=true; writes the responses verbatim
// (entry order preserved) as JSON.
// Run: java -cp "$KAFKA_LIBS/*:classes" DescribeConfigsDump 127.0.0.1 19200 OUTDIR
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.SerializationFeature;
import org.apache.kafka.common.config.ConfigResource;
import org.apache.kafka.common.message.*;
import org.apache.kafka.common.protocol.ApiKeys;
import org.apache.kafka.common.protocol.Errors;
import org.apache.kafka.common.requests.*;

import java.io.*;
import java.net.Socket;
import java.nio.ByteBuffer;
import java.util.*;

public class DescribeConfigsDump {
    static Socket sock;
    static DataOutputStream out;
    static DataInputStream in;
    static int corr = 0;

    static AbstractResponse send(AbstractRequest req, ApiKeys key, short version) throws IOException {
        RequestHeader header = new RequestHeader(key, version, "kafka-configs-dump", ++corr);
        ByteBuffer buf = req.serializeWithHeader(header);
        byte[] bytes = new byte[buf.remaining()];
        buf.get(bytes);
        out.writeInt(bytes.length);
        out.write(bytes);
        out.flush();
        int size = in.readInt();
        byte[] resp = new byte[size];
        in.readFully(resp);
        return AbstractResponse.parseResponse(ByteBuffer.wrap(resp), header);
    }

    static Map<String, Object> createTopic(String name, Map<String, String> configs) throws Exception {
        short v = ApiKeys.CREATE_TOPICS.latestVersion();
        CreateTopicsRequestData.CreatableTopicConfigCollection cfgs = new CreateTopicsRequestData.CreatableTopicConfigCollection();
        configs.forEach((k, val) -> cfgs.add(new CreateTopicsRequestData.CreatableTopicConfig().setName(k).setValue(val)));
        CreateTopicsRequestData.CreatableTopicCollection topics = new CreateTopicsRequestData.CreatableTopicCollection();
        topics.add(new CreateTopicsRequestData.CreatableTopic().setName(name).setNumPartitions(1)
                .setReplicationFactor((short) 1).setConfigs(cfgs));
        CreateTopicsRequestData data = new CreateTopicsRequestData().setTopics(topics).setTimeoutMs(30000).setValidateOnly(false);
        CreateTopicsResponse r = (CreateTopicsResponse) send(new CreateTopicsRequest.Builder(data).build(v), ApiKeys.CREATE_TOPICS, v);
        Map<String, Object> m = new LinkedHashMap<>();
        m.put("api_version", v);
        m.put("request_configs", configs);
        for (CreateTopicsResponseData.CreatableTopicResult t : r.data().topics()) {
            m.put("name", t.name());
            m.put("error_code", t.errorCode());
            m.put("error_message", t.errorMessage());
            m.put("num_partitions", t.numPartitions());
            m.put("replication_factor", t.replicationFactor());
            List<Map<String, Object>> cl = new ArrayList<>();
            if (t.configs() != null) for (CreateTopicsResponseData.CreatableTopicConfigs c : t.configs()) {
                Map<String, Object> cm = new LinkedHashMap<>();
                cm.put("name", c.name());
                cm.put("value", c.value());
                cm.put("read_only", c.readOnly());
                cm.put("config_source", c.configSource());
                cm.put("config_source_name", DescribeConfigsResponse.ConfigSource.forId(c.configSource()).name());
                cm.put("is_sensitive", c.isSensitive());
                cl.add(cm);
            }
            m.put("configs", cl);
        }
        if (!Errors.NONE.equals(Errors.forCode((Short) m.get("error_code"))))
            throw new RuntimeException("create failed: " + m);
        return m;
    }

    static Map<String, Object> describe(ConfigResource.Type type, String name) throws Exception {
        short v = ApiKeys.DESCRIBE_CONFIGS.latestVersion();
        for (int attempt = 0; ; attempt++) {
            DescribeConfigsRequestData data = new DescribeConfigsRequestData()
                    .setIncludeSynonyms(true).setIncludeDocumentation(true)
                    .setResources(Collections.singletonList(new DescribeConfigsRequestData.DescribeConfigsResource()
                            .setResourceType(type.id()).setResourceName(name).setConfigurationKeys(null)));
            DescribeConfigsResponse r = (DescribeConfigsResponse) send(new DescribeConfigsRequest.Builder(data).build(v), ApiKeys.DESCRIBE_CONFIGS, v);
            DescribeConfigsResponseData.DescribeConfigsResult res = r.data().results().get(0);
            if (res.errorCode() == Errors.UNKNOWN_TOPIC_OR_PARTITION.code() && attempt < 50) { Thread.sleep(200); continue; }
            Map<String, Object> m = new LinkedHashMap<>();
            m.put("api_version", v);
            Map<String, Object> req = new LinkedHashMap<>();
            req.put("resource_type", type.name());
            req.put("resource_type_id", type.id());
            req.put("resource_name", name);
            req.put("configuration_keys", null);
            req.put("include_synonyms", true);
            req.put("include_documentation", true);
            m.put("request", req);
            m.put("throttle_time_ms", r.data().throttleTimeMs());
            m.put("error_code", res.errorCode());
            m.put("error_message", res.errorMessage());
            m.put("resource_type", res.resourceType());
            m.put("resource_name", res.resourceName());
            m.put("count", res.configs().size());
            List<Map<String, Object>> cl = new ArrayList<>();
            for (DescribeConfigsResponseData.DescribeConfigsResourceResult c : res.configs()) {
                Map<String, Object> cm = new LinkedHashMap<>();
                cm.put("name", c.name());
                cm.put("value", c.value());
                cm.put("source", c.configSource());
                cm.put("source_name", DescribeConfigsResponse.ConfigSource.forId(c.configSource()).name());
                cm.put("is_sensitive", c.isSensitive());
                cm.put("read_only", c.readOnly());
                cm.put("config_type", c.configType());
                cm.put("config_type_name", DescribeConfigsResponse.ConfigType.forId(c.configType()).name());
                cm.put("documentation", c.documentation());
                List<Map<String, Object>> sl = new ArrayList<>();
                for (DescribeConfigsResponseData.DescribeConfigsSynonym s : c.synonyms()) {
                    Map<String, Object> sm = new LinkedHashMap<>();
                    sm.put("name", s.name());
                    sm.put("value", s.value());
                    sm.put("source", s.source());
                    sm.put("source_name", DescribeConfigsResponse.ConfigSource.forId(s.source()).name());
                    sl.add(sm);
                }
                cm.put("synonyms", sl);
                cl.add(cm);
            }
            m.put("configs", cl);
            return m;
        }
    }

    public static void main(String[] args) throws Exception {
        String host = args[0];
        int port = Integer.parseInt(args[1]);
        File outDir = new File(args[2]);
        ObjectMapper om = new ObjectMapper().enable(SerializationFeature.INDENT_OUTPUT);
        sock = new Socket(host, port);
        out = new DataOutputStream(new BufferedOutputStream(sock.getOutputStream()));
        in = new DataInputStream(new BufferedInputStream(sock.getInputStream()));

        Map<String, String> custom = new LinkedHashMap<>();
        custom.put("retention.ms", "1000");
        custom.put("cleanup.policy", "compact");
        Map<String, Object> create = new LinkedHashMap<>();
        create.put("cfg-default", createTopic("cfg-default", Collections.emptyMap()));
        create.put("cfg-custom", createTopic("cfg-custom", custom));
        // extra (not in the brief): how non-canonical spellings are echoed back
        Map<String, String> odd = new LinkedHashMap<>();
        odd.put("cleanup.policy", "delete, compact");
        odd.put("min.cleanable.dirty.ratio", "0.50");
        odd.put("max.message.bytes", "02000");
        odd.put("preallocate", "TRUE");
        create.put("cfg-normalize", createTopic("cfg-normalize", odd));
        om.writeValue(new File(outDir, "createtopics-response.json"), create);

        Map<String, Object> topics = new LinkedHashMap<>();
        topics.put("cfg-default", describe(ConfigResource.Type.TOPIC, "cfg-default"));
        topics.put("cfg-custom", describe(ConfigResource.Type.TOPIC, "cfg-custom"));
        topics.put("cfg-normalize", describe(ConfigResource.Type.TOPIC, "cfg-normalize"));
        om.writeValue(new File(outDir, "describe-topic.json"), topics);

        Map<String, Object> brokers = new LinkedHashMap<>();
        brokers.put("1", describe(ConfigResource.Type.BROKER, "1"));
        brokers.put("", describe(ConfigResource.Type.BROKER, ""));
        om.writeValue(new File(outDir, "describe-broker.json"), brokers);
        sock.close();
        System.out.println("done");
    }
}
