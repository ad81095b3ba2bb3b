"""Test harness for dubbo-nat-sidecar: real ZooKeeper, a real Docker Engine and fake Dubbo peers.

Submodules are imported explicitly (``from testbed.zookeeper import ZooKeeperServer``) so that
the scripts run inside containers (``testbed.provider``, ``testbed.consumer``) pull in nothing
beyond the standard library and kazoo.
"""
