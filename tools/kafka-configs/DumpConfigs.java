// Dumps Kafka 3.9.2's topic (LogConfig) and broker (KafkaConfig) ConfigDefs to JSON.
// Run: java -cp "$KAFKA_LIBS/*:." DumpConfigs OUTDIR
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.SerializationFeature;
import org.apache.kafka.common.config.ConfigDef;
import org.apache.kafka.common.config.ConfigDef.ConfigKey;
import org.apache.kafka.server.config.ConfigSynonym;
import org.apache.kafka.server.config.ServerTopicConfigSynonyms;
import org.apache.kafka.storage.internals.log.LogConfig;

import java.io.File;
import java.lang.reflect.Field;
import java.lang.reflect.Method;
import java.lang.reflect.Modifier;
import java.util.*;

public class DumpConfigs {
    static final Method GET_CONFIG_VALUE;
    static {
        try {
            GET_CONFIG_VALUE = ConfigDef.class.getDeclaredMethod("getConfigValue", ConfigKey.class, String.class);
            GET_CONFIG_VALUE.setAccessible(true);
        } catch (Exception e) { throw new RuntimeException(e); }
    }

    static Object field(Object o, String name) throws Exception {
        Class<?> c = o.getClass();
        while (c != null) {
            try {
                Field f = c.getDeclaredField(name);
                f.setAccessible(true);
                return f.get(o);
            } catch (NoSuchFieldException e) { c = c.getSuperclass(); }
        }
        throw new NoSuchFieldException(name);
    }

    static Object staticField(Class<?> c, String name) throws Exception {
        Field f = c.getDeclaredField(name);
        f.setAccessible(true);
        return f.get(null);
    }

    static Object jsonable(Object v) {
        if (v == null || v instanceof String || v instanceof Boolean || v instanceof Number) return v;
        if (v instanceof Collection) { List<Object> l = new ArrayList<>(); for (Object o : (Collection<?>) v) l.add(jsonable(o)); return l; }
        if (v instanceof Class) return ((Class<?>) v).getName();
        return String.valueOf(v);
    }

    // Structured description of a validator.
    static Map<String, Object> validator(ConfigDef.Validator v) throws Exception {
        if (v == null) return null;
        Map<String, Object> m = new LinkedHashMap<>();
        m.put("class", v.getClass().getName());
        m.put("string", v.toString());
        if (v instanceof ConfigDef.Range) {
            m.put("kind", "Range");
            m.put("min", field(v, "min"));
            m.put("max", field(v, "max"));
        } else if (v instanceof ConfigDef.ValidString) {
            m.put("kind", "ValidString");
            m.put("allowed", jsonable(field(v, "validStrings")));
        } else if (v instanceof ConfigDef.ValidList) {
            m.put("kind", "ValidList");
            m.put("allowed", jsonable(field(field(v, "validString"), "validStrings")));
        } else if (v instanceof ConfigDef.CaseInsensitiveValidString) {
            m.put("kind", "CaseInsensitiveValidString");
            m.put("allowed", jsonable(field(v, "validStrings")));
        } else if (v instanceof ConfigDef.NonEmptyString) {
            m.put("kind", "NonEmptyString");
        } else if (v instanceof ConfigDef.NonNullValidator) {
            m.put("kind", "NonNullValidator");
        } else if (v instanceof ConfigDef.NonEmptyStringWithoutControlChars) {
            m.put("kind", "NonEmptyStringWithoutControlChars");
        } else if (v instanceof ConfigDef.CompositeValidator) {
            m.put("kind", "CompositeValidator");
            List<Object> parts = new ArrayList<>();
            for (Object p : (Collection<?>) field(v, "validators")) parts.add(validator((ConfigDef.Validator) p));
            m.put("validators", parts);
        } else if (v instanceof ConfigDef.LambdaValidator) {
            m.put("kind", "LambdaValidator");
        } else if (v instanceof ConfigDef.ListSize) {
            m.put("kind", "ListSize");
            m.put("max_size", field(v, "maxSize"));
        } else {
            m.put("kind", "Other");
            // generic: dump declared non-static fields
            Map<String, Object> fields = new LinkedHashMap<>();
            for (Field f : v.getClass().getDeclaredFields()) {
                if (Modifier.isStatic(f.getModifiers())) continue;
                f.setAccessible(true);
                fields.put(f.getName(), jsonable(f.get(v)));
            }
            if (!fields.isEmpty()) m.put("fields", fields);
        }
        return m;
    }

    static Map<String, Object> describeKey(ConfigDef def, ConfigKey k, int order) throws Exception {
        Map<String, Object> m = new LinkedHashMap<>();
        m.put("name", k.name);
        m.put("definition_order", order);
        m.put("type", k.type.name());
        boolean hasDefault = k.hasDefault();
        m.put("has_default", hasDefault);
        // ConfigDef.convertToString is exactly what the broker's DescribeConfigs uses to render values.
        m.put("default", hasDefault && k.defaultValue != null ? ConfigDef.convertToString(k.defaultValue, k.type) : null);
        m.put("default_java_class", hasDefault && k.defaultValue != null ? k.defaultValue.getClass().getName() : null);
        m.put("docs_default", GET_CONFIG_VALUE.invoke(def, k, "Default"));
        m.put("validator", k.validator == null ? null : k.validator.toString());
        m.put("validator_structured", validator(k.validator));
        m.put("docs_valid_values", GET_CONFIG_VALUE.invoke(def, k, "Valid Values"));
        m.put("importance", k.importance == null ? null : k.importance.name());
        m.put("internal", k.internalConfig);
        m.put("group", k.group);
        m.put("documentation", k.documentation);
        m.put("sensitive", k.type == ConfigDef.Type.PASSWORD);
        return m;
    }

    static List<String> scalaSeqToJava(Object scalaIterable) {
        List<String> out = new ArrayList<>();
        scala.collection.Iterator<?> it = ((scala.collection.Iterable<?>) scalaIterable).iterator();
        while (it.hasNext()) out.add((String) it.next());
        return out;
    }

    public static void main(String[] args) throws Exception {
        File outDir = new File(args[0]);
        ObjectMapper om = new ObjectMapper().enable(SerializationFeature.INDENT_OUTPUT);
        kafka.server.DynamicBrokerConfig$ dbc = kafka.server.DynamicBrokerConfig$.MODULE$;

        // ---------------- topic configs ----------------
        LogConfig.LogConfigDef topicDef = LogConfig.configDefCopy();
        Map<String, ConfigKey> topicKeys = topicDef.configKeys();
        Map<String, List<ConfigSynonym>> allSyn = ServerTopicConfigSynonyms.ALL_TOPIC_CONFIG_SYNONYMS;
        List<Map<String, Object>> topicOut = new ArrayList<>();
        int order = 0;
        List<String> names = new ArrayList<>(topicKeys.keySet());
        Map<String, Integer> defOrder = new HashMap<>();
        for (String n : names) defOrder.put(n, order++);
        List<String> sorted = new ArrayList<>(names);
        Collections.sort(sorted);
        for (String n : sorted) {
            ConfigKey k = topicKeys.get(n);
            Map<String, Object> m = describeKey(topicDef, k, defOrder.get(n));
            m.put("server_default_property", topicDef.serverConfigName(n).orElse(null));
            m.put("no_server_default", LogConfig.CONFIGS_WITH_NO_SERVER_DEFAULTS.contains(n));
            String primary = ServerTopicConfigSynonyms.TOPIC_CONFIG_SYNONYMS.get(n);
            m.put("synonym_primary", primary);
            List<Map<String, Object>> syns = new ArrayList<>();
            if (allSyn.containsKey(n)) {
                for (ConfigSynonym s : allSyn.get(n)) {
                    Map<String, Object> sm = new LinkedHashMap<>();
                    sm.put("name", s.name());
                    String conv = s.converter() == ConfigSynonym.HOURS_TO_MILLISECONDS ? "HOURS_TO_MILLISECONDS"
                            : s.converter() == ConfigSynonym.MINUTES_TO_MILLISECONDS ? "MINUTES_TO_MILLISECONDS" : "identity";
                    sm.put("converter", conv);
                    syns.add(sm);
                }
            }
            m.put("synonyms_all_topic_config_synonyms", syns);
            // What ConfigHelper.createTopicConfigEntry actually consults for DescribeConfigs synonyms:
            // DynamicBrokerConfig.brokerConfigSynonyms(TOPIC_CONFIG_SYNONYMS(name), matchListenerOverride = true)
            m.put("synonyms_describe_configs_candidates",
                    primary == null ? Collections.emptyList() : scalaSeqToJava(dbc.brokerConfigSynonyms(primary, true)));
            topicOut.add(m);
        }
        Map<String, Object> topicDoc = new LinkedHashMap<>();
        topicDoc.put("kafka_version", org.apache.kafka.common.utils.AppInfoParser.getVersion());
        topicDoc.put("source", "org.apache.kafka.storage.internals.log.LogConfig.configDefCopy()");
        topicDoc.put("count", topicOut.size());
        topicDoc.put("internal_configs", topicOut.stream().filter(m -> (Boolean) m.get("internal")).map(m -> m.get("name")).toArray());
        topicDoc.put("log_config_config_names", LogConfig.configNames());
        topicDoc.put("configs_with_no_server_defaults", new TreeSet<>(LogConfig.CONFIGS_WITH_NO_SERVER_DEFAULTS));
        Map<String, Object> tcs = new TreeMap<>(ServerTopicConfigSynonyms.TOPIC_CONFIG_SYNONYMS);
        topicDoc.put("topic_config_synonyms", tcs);
        topicDoc.put("configs", topicOut);
        om.writeValue(new File(outDir, "topic.json"), topicDoc);

        // ---------------- broker configs ----------------
        ConfigDef brokerDef = kafka.server.KafkaConfig$.MODULE$.configDef();
        Map<String, ConfigKey> brokerKeys = brokerDef.configKeys();
        Map<String, String> modes = dbc.dynamicConfigUpdateModes();
        Set<String> allDynamic = new TreeSet<>(scalaSeqToJava(dbc.AllDynamicConfigs()));
        Set<String> perBroker = new TreeSet<>(scalaSeqToJava(staticField(kafka.server.DynamicBrokerConfig$.class, "PerBrokerConfigs")));
        Set<String> clusterListener = new TreeSet<>(scalaSeqToJava(staticField(kafka.server.DynamicBrokerConfig$.class, "ClusterLevelListenerConfigs")));
        Set<String> dynSecurity = new TreeSet<>(scalaSeqToJava(dbc.DynamicSecurityConfigs()));
        Set<String> nonDynamic = new TreeSet<>(scalaSeqToJava(kafka.server.DynamicConfig.Broker$.MODULE$.nonDynamicProps()));
        Set<String> dynBrokerNames = new TreeSet<>(kafka.server.DynamicConfig.Broker$.MODULE$.names());

        List<Map<String, Object>> brokerOut = new ArrayList<>();
        names = new ArrayList<>(brokerKeys.keySet());
        defOrder.clear(); order = 0;
        for (String n : names) defOrder.put(n, order++);
        sorted = new ArrayList<>(names);
        Collections.sort(sorted);
        for (String n : sorted) {
            ConfigKey k = brokerKeys.get(n);
            Map<String, Object> m = describeKey(brokerDef, k, defOrder.get(n));
            m.put("dynamic", modes.getOrDefault(n, "read-only"));
            m.put("read_only_in_describe_configs", !allDynamic.contains(n));
            m.put("synonyms_describe_configs_candidates", scalaSeqToJava(dbc.brokerConfigSynonyms(n, true)));
            brokerOut.add(m);
        }
        // Dynamic broker configs that are not KafkaConfig keys (e.g. replication quota configs)
        Map<String, Object> extraDyn = new TreeMap<>();
        Map<String, ConfigKey> dynKeys = kafka.server.DynamicConfig.Broker$.MODULE$.configKeys();
        for (String n : dynBrokerNames) {
            if (!brokerKeys.containsKey(n)) extraDyn.put(n, describeKey(brokerDef, dynKeys.get(n), -1));
        }
        Map<String, Object> brokerDoc = new LinkedHashMap<>();
        brokerDoc.put("kafka_version", org.apache.kafka.common.utils.AppInfoParser.getVersion());
        brokerDoc.put("source", "kafka.server.KafkaConfig$.MODULE$.configDef(); dynamic from kafka.server.DynamicBrokerConfig$.MODULE$.dynamicConfigUpdateModes()");
        brokerDoc.put("count", brokerOut.size());
        brokerDoc.put("internal_configs", brokerOut.stream().filter(m -> (Boolean) m.get("internal")).map(m -> m.get("name")).toArray());
        Map<String, Object> dyn = new LinkedHashMap<>();
        dyn.put("AllDynamicConfigs", allDynamic);
        dyn.put("PerBrokerConfigs", perBroker);
        dyn.put("ClusterLevelListenerConfigs", clusterListener);
        dyn.put("DynamicSecurityConfigs", dynSecurity);
        dyn.put("DynamicConfig.Broker.names", dynBrokerNames);
        dyn.put("DynamicConfig.Broker.nonDynamicProps", nonDynamic);
        dyn.put("dynamicConfigUpdateModes", new TreeMap<>(modes));
        dyn.put("dynamic_broker_configs_not_in_KafkaConfig", extraDyn);
        brokerDoc.put("dynamic_sets", dyn);
        brokerDoc.put("configs", brokerOut);
        om.writeValue(new File(outDir, "broker.json"), brokerDoc);
        System.out.println("topic configs: " + topicOut.size() + ", broker configs: " + brokerOut.size());
    }
}
