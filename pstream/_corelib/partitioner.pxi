# Kafka's default partitioner for keyed records (include/ps_murmur2.h), so a record appended
# in-process lands where a Java or librdkafka (murmur2_random) producer would put it.

def murmur2(data):
    """Kafka's Utils.murmur2 of a bytes-like key, as an unsigned 32-bit int."""
    cdef const uint8_t[::1] view = data
    if view.shape[0] == 0:
        return ps_murmur2(NULL, 0)
    return ps_murmur2(&view[0], view.shape[0])


def key_partition(data, int partitions):
    """The partition Kafka's default partitioner picks for a key: positive murmur2 modulo the count."""
    if partitions < 1:
        raise ValueError(f"partitions must be at least 1, got {partitions}")
    return (murmur2(data) & 0x7FFFFFFF) % partitions
