"""One module per Kafka API family; importing this package registers every handler."""

from pstream.broker.handlers import (api_versions, cluster, configs, fetch, list_offsets, metadata,  # noqa: F401
                                     produce, producers, topics)
