"""Observability: logs, the access log and metrics.

In: log records, request outcomes and what the stages report. Out: log lines on stderr
and a Prometheus registry. It must never log cookies, query strings or full client
addresses, and never slow a request (lines leave in batches, counters take no lock).
"""
