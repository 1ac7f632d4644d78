"""The Kafka-compatible broker: settings, server, connections and request handlers."""
