"""A synchronous Kafka client for operating a cluster (pstream or any Kafka-compatible broker)."""

from pstream.client.client import EARLIEST, LATEST, KafkaClient
from pstream.client.connection import BrokerConnection, KafkaError, Security

__all__ = ["EARLIEST", "LATEST", "BrokerConnection", "KafkaClient", "KafkaError", "Security"]
