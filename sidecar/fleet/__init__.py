"""The fleet: this sidecar's part in it (member.py: membership, election, its work), the one
elected indexer that watches the registry for every host (indexer.py); routes.py decides
which registrations concern which host."""
