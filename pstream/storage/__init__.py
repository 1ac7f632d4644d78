"""Storage as Python sees it: on-disk layout and topic configuration.

The partition log itself (segments, indexes, recovery, shard threads) is compiled in
`pstream._core`; this package owns the names, settings and metadata files around it.
"""
