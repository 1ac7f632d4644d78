"""The storage engine.

The partition log itself (segments, indexes, recovery, shard threads) is Cython in this
directory (*.pxd declarations, *.pxi code) compiled into `pstream._core`; the Python
modules here own the names, settings and metadata files around it.
"""
