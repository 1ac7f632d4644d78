"""Record batches and their compression, as Python sees them.

`compression` maps Kafka codec ids to libraries, `reference` is the slow pure-Python
codec that tests use as the oracle for the compiled one, and `types` holds the
pure-Python `Record` and `BatchHeader` it returns.
"""
