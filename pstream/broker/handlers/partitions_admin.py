"""Partition administration on one node: DescribeTopicPartitions (KIP-966), List/AlterPartitionReassignments,
ElectLeaders, AlterReplicaLogDirs, DescribeQuorum."""
