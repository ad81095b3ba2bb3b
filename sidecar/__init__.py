"""dubbo-nat-sidecar: makes Dubbo providers in Docker bridge networks reachable from other hosts."""

__version__ = "0.2.0"
