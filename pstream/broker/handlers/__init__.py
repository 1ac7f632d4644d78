"""One module per Kafka API family; importing this package registers every handler."""

from pstream.broker.handlers import (api_versions, cluster, configs, fetch, groups, list_offsets,  # noqa: F401
                                     metadata, partitions_admin, produce, producers, quotas, topics, transactions)
