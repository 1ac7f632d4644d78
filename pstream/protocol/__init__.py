"""Kafka's wire protocol as data: primitives, headers, error codes and the generated
message codecs (pstream/protocol/messages/, made by tools/gen_protocol.py). No I/O."""
