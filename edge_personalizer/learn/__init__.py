"""The learning loop: what visitors were shown and whether they converted, counted and judged.

In: exposures and conversions from the request path, as dict increments in the worker
(`counters`). Out: totals in a store shared by workers and instances (`store`, written by
the background `flusher`) and the numbers marketers decide from (`stats`). Never on the
page's way: no I/O, no waiting, no exception from here may block or fail a page.
"""
