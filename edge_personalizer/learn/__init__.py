"""The learning loop: what visitors were shown and whether they converted, counted and judged.

In: exposures, conversions and interests viewed, as increments in the worker (`counters`).
Out: totals in a store shared by workers and instances (`store`, written by the `flusher`),
the numbers marketers decide from (`stats`), and the tables the `trainer` publishes for every
worker: bandit weights per cell (`bandit`), the "visitors like you" model (`affinity`).
Never on the page's way: no I/O, no waiting, no exception from here may block or fail a page.
"""
