"""Cluster mode (`pstream serve --cluster etcd://HOST:PORT[/NAME] --node-id N`): brokers that keep
their metadata in etcd and replicate partitions with Kafka's replica protocol.

  node         a broker's membership: joining, the controller's duty, the cluster's view for handlers
  etcd_store   etcd through aetcd: leases, the controller election, watches, compare-and-swap writes
  state        the metadata model and its key layout (no I/O)
  placement    where a new topic's replicas go (Kafka's assignment)
  election     the controller's decisions: ISR changes and leaders when brokers come and go
  rules        the replica protocol's decisions: high watermark, catching up, truncation points
  epochs       a partition's leader epochs (leader-epoch-checkpoint)
  replication  leading and following: replica fetches, the ISR, acks=all, truncation

election, rules and epochs are pure, so tests/cluster/simulation.py runs the same decisions.
"""
