"""The background processes: the outbox worker and the scheduler."""
