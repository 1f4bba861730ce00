"""Leave the process without interpreter teardown.

The Temporal client's native threads can abort a short-lived process while Python finalizes
("PyGILState_Release: thread state must be current", SIGABRT), turning a clean run into exit
code -6 (temporalio/sdk-python#300). Once our work is done and flushed, skip the teardown.
"""

from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Callable


def exit_after(main: Callable[[], object]) -> None:
    code = 0
    try:
        main()
    except SystemExit as stop:
        code = stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 1)
        if isinstance(stop.code, str):
            print(stop.code, file=sys.stderr)
    except KeyboardInterrupt:
        code = 130
    except BaseException:  # noqa: BLE001 - report it, then leave as Python would
        traceback.print_exc()
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
