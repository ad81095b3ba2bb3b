"""How sidecars coordinate through ZooKeeper, one small recipe per primitive over the
``Coordination`` seam (sidecar/seams.py), each usable without the loop: a lease, an
election, membership, publishing."""
