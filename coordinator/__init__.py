"""Cluster metadata in ZooKeeper, placement, health, and the coordinator daemon."""
