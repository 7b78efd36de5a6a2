"""Multi-site replication (SPEC §9, docs/design-replication.md): the wire
format, the HTTP client, pull/push/bootstrap and repl-validate."""
