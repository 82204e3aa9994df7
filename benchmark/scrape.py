"""Scraping a server's /metrics during a benchmark, for the dashboard picture (benchmark/dashboard.py).

``Scraper(url, path).start()`` appends one JSON line per second to ``path``:
``{"t": <unix time>, "samples": [[name, {labels}, value], ...]}`` with every ``hetu_``
sample of the scrape; ``stop()`` ends it.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

INTERVAL = 1.0


def scrape_samples(url: str, token: str | None = None) -> list[list]:
    """``[[name, labels, value], ...]`` of the ``hetu_`` samples at ``url``."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=5) as reply:
        text = reply.read().decode()
    return [[s.name, s.labels, s.value] for family in text_string_to_metric_families(text)
            for s in family.samples if s.name.startswith("hetu_")]


class Scraper:
    """Scrapes ``url`` every :data:`INTERVAL` seconds in a thread, into a JSON-lines file."""

    def __init__(self, url: str, path: str, token: str | None = None) -> None:
        self.url, self.path, self.token = url, path, token
        self.scrapes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="metrics-scraper", daemon=True)

    def start(self) -> Scraper:
        self._thread.start()
        return self

    def _run(self) -> None:
        with open(self.path, "w") as out:
            while not self._stop.is_set():
                started = time.time()
                try:
                    samples = scrape_samples(self.url, self.token)
                except OSError:
                    samples = None  # the server is starting or stopping
                if samples is not None:
                    out.write(json.dumps({"t": started, "samples": samples}) + "\n")
                    out.flush()
                    self.scrapes += 1
                self._stop.wait(max(0.0, INTERVAL - (time.time() - started)))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
