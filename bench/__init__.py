"""Benchmarks of the sidecar against ZooKeeper's own speed (not part of the test suite)."""
