"""How sidecars coordinate through ZooKeeper, one small recipe per primitive over the
``Coordination`` protocol (sidecar/protocols.py), each usable without the loop: a lease, an
election, membership, publishing."""
