"""One structlog set-up for the worker: JSON lines, or a console view on a terminal.

The SDK's workflow.logger and activity.logger go through the same renderer, with their context
(workflow id, run id, activity, attempt) as fields rather than pasted into the message; our own
calls add `batch` and `instance`. workflow.logger stays silent while a workflow replays its
history, so a line is written once however often a workflow is replayed.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import TextIO

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger
from temporalio import activity, workflow

CONTEXT_FIELDS = ("temporal_workflow", "temporal_activity", "scale_set", "batch", "instance", "step")


def lift_temporal_context(_: WrappedLogger, __: str, event: EventDict) -> EventDict:
    """Flatten the SDK's context dicts into top-level fields."""
    if context := event.pop("temporal_workflow", None):
        event.setdefault("workflow_id", context.get("workflow_id"))
        event.setdefault("run_id", context.get("run_id"))
        event.setdefault("workflow_type", context.get("workflow_type"))
    if context := event.pop("temporal_activity", None):
        event.setdefault("workflow_id", context.get("workflow_id"))
        event.setdefault("run_id", context.get("workflow_run_id"))
        event["activity"] = context.get("activity_type")
        event["attempt"] = context.get("attempt")
    return event


def configure_logging(
    level: str | None = None, *, stream: TextIO | None = None, json_lines: bool | None = None
) -> None:
    level = (level or os.environ.get("LOG_LEVEL", "INFO")).upper()
    stream = stream or sys.stderr
    if json_lines is None:
        json_lines = not stream.isatty()
    workflow.logger.workflow_info_on_message = False
    activity.logger.activity_info_on_message = False
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.stdlib.ExtraAdder(allow=CONTEXT_FIELDS),
        lift_temporal_context,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    renderer = structlog.processors.JSONRenderer() if json_lines else structlog.dev.ConsoleRenderer()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # The Azure SDK logs every request and response at INFO: ours say what happened, once.
    logging.getLogger("azure").setLevel(max(root.level, logging.WARNING))
