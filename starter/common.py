"""What every `upgradectl` command shares: the error mapping (one line, an exit code), the
option helpers, and the consoles it prints on. The command groups import it; it imports none
of them.

Exit codes (docs/usage.md: Exit codes):
  0  Completed
  1  Faulted
  2  Cancelled, and usage errors (an unknown option, a missing or malformed option value)
  3  refused before anything started: an invalid policy or option value, an unreadable policy
     or spec file, an unknown scale set or image, an upgrade already running, a request the
     fleet refused
  4  anything else: Temporal or the fleet not reachable (or lost for too long), no worker
  5  no such upgrade: the scale set has no upgrade (`status`, `watch`, `cancel`, `pause`,
     `resume`, `approve`), or none running to cancel, pause, resume or approve

Every error is one line (or one line per invalid field) on stderr, never a traceback. Text a
user or a back end chose is printed with control characters made visible, never as rich markup
or emoji, and cut short when long (starter/terminal.py).
"""

from __future__ import annotations

import asyncio
import getpass
import inspect
import json
import re
import sys
from collections.abc import Callable, Coroutine
from functools import wraps
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import typer
import yaml
from pydantic import TypeAdapter, ValidationError
from rich.text import Text
from temporalio.client import WorkflowFailureError, WorkflowUpdateFailedError
from temporalio.service import RPCError

from fleet.errors import FleetError, FleetRequestError
from models.base import describe_validation_error, without_docs_link
from models.fleet import ScaleSetName
from models.image import ImageReference
from starter.terminal import PATH_LIMIT, clean, clean_message
from starter.terminal import console as terminal_console
from starter.upgrades import (
    EXIT_ERROR,
    EXIT_NO_UPGRADE,
    EXIT_REFUSED,
    EXIT_USAGE,
    NoSuchUpgrade,
    UpgradeFailed,
    UpgradeRefused,
)

if TYPE_CHECKING:
    from fleet.azure.settings import AzureSettings

T = TypeVar("T")
Command = Callable[..., Coroutine[Any, Any, T]]


class UsageProblem(typer.BadParameter):
    """A usage error in our words (exit 2, with the `try … --help` hint): options that go
    together or not, as click's own errors say a missing or unknown option."""

    def format_message(self) -> str:
        return self.message


try:  # typer >= 0.26 carries its own click; its errors derive from TyperException
    from typer import TyperException as _CommandLineError
except ImportError:  # pragma: no cover - older typer on click
    # Another class under the same name, for the typer this falls back to; mypy sees today's.
    from click import ClickException as _CommandLineError  # type: ignore[assignment]
CommandLineError = _CommandLineError  # what cli.py's main() catches


console = terminal_console()
errors = terminal_console(stderr=True)
_SCALE_SET_NAME = TypeAdapter(ScaleSetName)
# An extension's name in a scale set's model, as `fleet create` takes it (Azure's are of this
# kind: `AzureMonitorLinuxAgent`, `Microsoft.Azure.Monitor.AzureMonitorLinuxAgent`).
EXTENSION_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def say(message: str, style: str = "") -> None:
    """One message on stderr, its user text made harmless."""
    errors.print(Text(clean_message(message), style=style), soft_wrap=True)


def fail(message: str, code: int = EXIT_REFUSED) -> NoReturn:
    errors.print(Text.assemble(("error: ", "bold red"), clean_message(message)), soft_wrap=True)
    raise typer.Exit(code)


def azure_settings() -> AzureSettings:
    """Where Azure is and how to sign in, from the environment; a bad value is one line."""
    from fleet.azure.settings import AzureSettings

    try:
        return AzureSettings.from_env()
    except ValueError as err:
        fail(str(err), EXIT_USAGE)


def fleet_failure(err: FleetError) -> NoReturn:
    """The fleet refused (3) or could not be reached or failed (4), in its own words."""
    if isinstance(err, FleetRequestError) or not err.retryable:
        fail(f"the fleet refused: {err.code}: {err.message}", EXIT_REFUSED)
    if err.code in ("ConnectionError", "Timeout"):
        fail(
            f"cannot reach the fleet: {err.message} (set AZURE_ARM_ENDPOINT; FLEET_URL for fleet commands)",
            EXIT_ERROR,
        )
    fail(f"the fleet failed: {err.code}: {err.message}", EXIT_ERROR)


def run(main: Callable[..., Coroutine[Any, Any, T]]) -> Callable[..., T]:
    """Run an async command, turning the errors users meet into one clear line."""

    @wraps(main)
    def command(*args: Any, **kwargs: Any) -> T:
        try:
            return asyncio.run(main(*args, **kwargs))
        except (typer.Exit, typer.Abort, CommandLineError, KeyboardInterrupt):
            raise
        except UpgradeRefused as err:
            fail(f"{err.code}: {err.message}")
        except NoSuchUpgrade as err:
            fail(str(err), EXIT_NO_UPGRADE)
        except UpgradeFailed as err:
            fail(str(err), EXIT_ERROR)
        except FleetError as err:
            fleet_failure(err)
        except ValidationError as err:
            fail(describe_validation_error(err))
        except RuntimeError as err:
            if "connect" in str(err).lower():
                fail(
                    f"cannot reach Temporal: {without_docs_link(str(err))} (set TEMPORAL_ADDRESS)", EXIT_ERROR
                )
            fail(f"{type(err).__name__}: {err}", EXIT_ERROR)
        except RPCError as err:
            fail(f"Temporal: {err.status.name if err.status else 'error'}: {err.message}", EXIT_ERROR)
        except (WorkflowFailureError, WorkflowUpdateFailedError) as err:
            fail(f"{err}: {err.cause}", EXIT_ERROR)
        except ValueError as err:
            fail(without_docs_link(str(err)))
        except Exception as err:  # noqa: BLE001 - one line, never a traceback
            fail(f"unexpected {type(err).__name__}: {without_docs_link(str(err))}", EXIT_ERROR)

    return command


def load_document(path: Path, option: str) -> dict[str, Any]:
    """A JSON or YAML object from a file; anything else is refused naming the option and file."""
    where = f"{option} {clean(path, PATH_LIMIT)}"
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as err:
        fail(f"{where}: not a text file (byte {err.start} is not UTF-8); give a JSON or YAML file")
    except OSError as err:
        fail(f"{where}: cannot read it: {err.strerror or err}")
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(err, "problem", None) or type(err).__name__
        if isinstance(err, yaml.reader.ReaderError):  # a control character, say
            character = chr(err.character) if isinstance(err.character, int) else err.character
            at = f" at character {err.position + 1}"
            problem = f"{clean(character)!s} is not allowed"
        fail(f"{where}: not valid JSON or YAML{at}: {problem}")
    if not isinstance(data, dict):
        fail(f"{where}: must hold a JSON or YAML object (found {type(data).__name__})")
    if not all(isinstance(key, str) for key in data):
        fail(f"{where}: every key must be a string")
    return data


def parse_image(text: str, option: str = "--image") -> ImageReference:
    try:
        return ImageReference.parse(text)
    except ValidationError as err:
        fail(f"{option}: " + "; ".join(describe_validation_error(err).splitlines()))
    except ValueError as err:
        fail(f"{option}: {err}")


def scale_set_name(name: str, where: str = "SCALE_SET") -> str:
    """A name the fleet could hold; anything else is refused before any call."""
    try:
        return _SCALE_SET_NAME.validate_python(name)
    except ValidationError:
        fail(f"{where}: '{clean(name)}' is not a scale set name (letters, digits, '.', '_', '-'; up to 64)")


def print_json(document: Any) -> None:
    sys.stdout.write(json.dumps(document, indent=2) + "\n")


def with_options(**groups: Callable[..., Any]) -> Callable[[Command[T]], Command[T]]:
    """Options several commands take, declared once as the parameters of a function (typer reads
    them from its signature, as from a command's). A command's parameter named in `groups` takes
    that function's options in its place (in `--help` too) and receives what it makes of them."""

    def declare(command: Command[T]) -> Command[T]:
        signature = inspect.signature(command, eval_str=True)
        declared = {name: inspect.signature(make, eval_str=True).parameters for name, make in groups.items()}
        parameters: list[inspect.Parameter] = []
        for parameter in signature.parameters.values():
            parameters += declared[parameter.name].values() if parameter.name in groups else [parameter]

        @wraps(command)
        async def with_groups(**given: Any) -> T:
            for name, make in groups.items():
                given[name] = make(**{option: given.pop(option) for option in declared[name]})
            return await command(**given)

        with_groups.__signature__ = signature.replace(parameters=parameters)  # type: ignore[attr-defined]
        return with_groups

    return declare


def comma_list(text: str | None) -> list[str] | None:
    """Comma-separated values, blanks dropped (None: not given)."""
    return None if text is None else [part.strip() for part in text.split(",") if part.strip()]


# --- who asks, and why --------------------------------------------------------------------------

REASON_LIMIT = 500  # characters of a --reason: pause, rollout hold, rollout cancel


def os_user() -> str:
    """Who runs upgradectl: recorded as who paused, resumed, approved, enrolled or held."""
    try:
        return getpass.getuser() or "User"
    except (OSError, KeyError, ImportError):
        return "User"


def text_option(value: str, option: str, limit: int, *, what: str) -> str:
    """A free text option (a reason, a name): not empty, not too long, no control characters."""
    text = value.strip()
    if not text:
        fail(f"{option}: must not be empty ({what})")
    if len(text) > limit:
        fail(f"{option}: at most {limit} characters (got {len(text)})")
    if clean(text, None) != text:
        fail(f"{option}: control characters are not allowed (got '{clean(text)}')")
    return text


def reason_of(text: str, what: str) -> str:
    """A --reason: why, in 1 to REASON_LIMIT characters, no control characters."""
    return text_option(text, "--reason", REASON_LIMIT, what=what)
