"""The fleet: one elected indexer watches the registry for every host (indexer.py); routes.py
decides which registrations concern which host."""
