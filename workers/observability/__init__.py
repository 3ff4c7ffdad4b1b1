"""Seeing a running Conveyor: Prometheus metrics, the HTTP probes, the broker's view of the
queues and the periodic reconciliation."""
