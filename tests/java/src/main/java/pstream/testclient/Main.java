package pstream.testclient;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;

import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ExecutionException;

/**
 * A command-line test client of pstream built on Apache Kafka's own Java client (kafka-clients).
 *
 * <pre>
 *   java -cp 'target/classes:target/dependency/*' pstream.testclient.Main SUBCOMMAND 'JSON-SPEC'
 * </pre>
 *
 * Each subcommand runs one scenario and prints what the client reports as JSON lines on stdout (one
 * object per line, with an "event" key); the tests (tests/integration/test_java_clients.py) assert on
 * them. The client's own logs go to stderr. Exit status 0 when the scenario ran to its end, 1 when it
 * stopped on an error (the last line is then {"event": "error", ...}), 2 on bad usage.
 *
 * Subcommands:
 *   admin          run a list of Admin operations (AdminOps)
 *   fetch-sessions produce, then consume with assign() and keep polling (FetchSessions)
 *   group          a consumer group with two members joining and leaving (Group)
 */
public final class Main {
    static final ObjectMapper JSON = new ObjectMapper();

    private Main() {}

    public static void main(String[] args) {
        if (args.length != 2) {
            System.err.println("usage: Main admin|fetch-sessions|group JSON-SPEC");
            System.exit(2);
        }
        int status = 0;
        try {
            JsonNode spec = JSON.readTree(args[1]);
            switch (args[0]) {
                case "admin" -> AdminOps.run(spec);
                case "fetch-sessions" -> FetchSessions.run(spec);
                case "group" -> Group.run(spec);
                default -> {
                    System.err.println("unknown subcommand " + args[0]);
                    System.exit(2);
                }
            }
        } catch (Throwable t) {
            emit("error", error(t));
            status = 1;
        }
        System.out.flush();
        // Halt rather than exit: a client thread still closing must not keep the JVM (and the test) waiting.
        Runtime.getRuntime().halt(status);
    }

    /** Prints one JSON line: {"event": event, ...fields}. */
    static synchronized void emit(String event, Map<String, ?> fields) {
        Map<String, Object> line = new LinkedHashMap<>();
        line.put("event", event);
        line.putAll(fields);
        try {
            System.out.println(JSON.writeValueAsString(line));
        } catch (Exception e) {
            throw new RuntimeException(e);
        }
        System.out.flush();
    }

    /** {"class": the exception's simple class name, "message": ...}, unwrapping ExecutionException. */
    static Map<String, Object> error(Throwable t) {
        while (t instanceof ExecutionException && t.getCause() != null) {
            t = t.getCause();
        }
        Map<String, Object> m = new LinkedHashMap<>();
        m.put("class", t.getClass().getSimpleName());
        m.put("message", t.getMessage());
        if (t.getCause() != null && t.getCause() != t) {
            m.put("cause", t.getCause().getClass().getSimpleName() + ": " + t.getCause().getMessage());
        }
        List<String> where = new ArrayList<>();
        for (StackTraceElement e : t.getStackTrace()) {
            if (where.size() >= 8) break;
            where.add(e.toString());
        }
        m.put("stack", where);
        return m;
    }

    static Map<String, Object> map(Object... kv) {
        Map<String, Object> m = new LinkedHashMap<>();
        for (int i = 0; i < kv.length; i += 2) {
            m.put((String) kv[i], kv[i + 1]);
        }
        return m;
    }

    static String text(JsonNode spec, String key, String dflt) {
        JsonNode n = spec.get(key);
        return n == null || n.isNull() ? dflt : n.asText();
    }

    static int integer(JsonNode spec, String key, int dflt) {
        JsonNode n = spec.get(key);
        return n == null || n.isNull() ? dflt : n.asInt();
    }

    static String required(JsonNode spec, String key) {
        String v = text(spec, key, null);
        if (v == null) throw new IllegalArgumentException("the spec has no \"" + key + "\"");
        return v;
    }
}
