# pstream.testing is a pytest plugin installed with pstream: its fixtures need no import here.
# Override `kafka_broker_settings` to change what the broker starts with, for example:
#
#     @pytest.fixture(scope="session")
#     def kafka_broker_settings():
#         return {"group_initial_rebalance_delay_ms": 0, "default_partitions": 3}
