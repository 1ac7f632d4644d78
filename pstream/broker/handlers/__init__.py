"""One module per Kafka API family; importing this package registers every handler."""

from pstream.broker.handlers import (  # noqa: F401
    acls,
    api_versions,
    cluster,
    configs,
    consumer_groups,
    fetch,
    groups,
    list_offsets,
    metadata,
    partitions_admin,
    produce,
    producers,
    quotas,
    sasl,
    topics,
    transactions,
)
