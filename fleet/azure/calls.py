"""Counting ARM calls (for the benchmark and the coalescing tests): reads and actions."""

from __future__ import annotations

from collections import Counter
from typing import Any

from azure.core.pipeline import PipelineRequest
from azure.core.pipeline.policies import SansIOHTTPPolicy

READS = "reads"
ACTIONS = "actions"
_READ_METHODS = frozenset({"GET", "HEAD"})


class CallCounter(SansIOHTTPPolicy[Any, Any]):
    """A per-call policy (before the retry policy): one count per SDK call or page, whatever
    the SDK's retries did underneath."""

    def __init__(self, calls: Counter[str]) -> None:
        self.calls = calls

    def on_request(self, request: PipelineRequest[Any]) -> None:
        method = request.http_request.method.upper()
        self.calls[READS if method in _READ_METHODS else ACTIONS] += 1
