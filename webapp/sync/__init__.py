"""DB-aware orchestration run by RQ: the outbox, sync runs, push and pull jobs."""
