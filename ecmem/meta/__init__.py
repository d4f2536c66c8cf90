"""The cluster's metadata in ZooKeeper: records (model), where they live (paths),
reading and updating them (catalog), and write leases (lease)."""
