"""Prometheus metrics of a server: what is counted, where, and how it is scraped.

Off by default (``METRICS: false``); when off nothing here is imported by the hot path
and each hook is one ``is None`` check. When on:

* :mod:`.meters` counts in plain Python ints, per worker process, on the hot path
  (calls by endpoint, latencies, pushes, frames and bytes, backend round trips);
* :mod:`.hooks` holds the few metered variants of hot-path classes the worker uses
  instead of the plain ones (the endpoint executor, the message pipeline, backend clients);
* :mod:`.export` copies those counts, about once a second, into ``prometheus_client``
  metrics in its multiprocess mode (one set of files per worker in a directory of the
  server's own), so a scrape sums every worker;
* :mod:`.scrape` answers scrapes, on a listener of its own in the main process or on the
  public listener behind a token;
* :mod:`.settings` reads the ``METRICS*`` config keys; :mod:`.process` sets up and
  removes the metrics directory and the listener around ``hetu start``.

What each metric means is in docs/operations.md.
"""
