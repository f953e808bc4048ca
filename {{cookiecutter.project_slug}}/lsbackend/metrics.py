"""Request and training counters in Prometheus' text format (per worker process)."""

from __future__ import annotations

import threading
from collections import defaultdict


class Metrics:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests: dict[tuple[str, int], int] = defaultdict(int)
        self.seconds: dict[str, float] = defaultdict(float)
        self.tasks_predicted = 0

    def observe(self, endpoint: str, status: int, seconds: float) -> None:
        with self._lock:
            self.requests[(endpoint, status)] += 1
            self.seconds[endpoint] += seconds

    def render(self) -> str:
        lines = [
            "# HELP lsbackend_requests_total Requests answered, by endpoint and status.",
            "# TYPE lsbackend_requests_total counter",
        ]
        with self._lock:
            for (endpoint, status), n in sorted(self.requests.items()):
                lines.append(f'lsbackend_requests_total{{endpoint="{endpoint}",status="{status}"}} {n}')
            lines += [
                "# HELP lsbackend_request_seconds_total Time spent answering, by endpoint.",
                "# TYPE lsbackend_request_seconds_total counter",
            ]
            for endpoint, s in sorted(self.seconds.items()):
                lines.append(f'lsbackend_request_seconds_total{{endpoint="{endpoint}"}} {s:.6f}')
            lines += [
                "# HELP lsbackend_tasks_predicted_total Tasks predicted.",
                "# TYPE lsbackend_tasks_predicted_total counter",
                f"lsbackend_tasks_predicted_total {self.tasks_predicted}",
            ]
        return "\n".join(lines) + "\n"
