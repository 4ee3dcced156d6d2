"""The learning loop: what visitors were shown and whether they converted, counted and judged.

In: exposures, conversions and interests viewed, from the request path, as dict increments
in the worker (`counters`). Out: totals in a store shared by workers and instances (`store`,
written by the background `flusher`), the numbers marketers decide from (`stats`), and small
tables the background `trainer` publishes and every worker reads: bandit weights per cell
(`bandit`) and the "visitors like you" model (`affinity`). Never on the page's way: no I/O,
no waiting, no exception from here may block or fail a page.
"""
