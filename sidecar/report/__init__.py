"""What the sidecar tells people: the event log (events.py), the plan and status tables
(tables.py)."""
