"""The build record of this installation, read once by the runtime's reader
(None in a source checkout). Its own module so that the package's ``__init__``
and the ops layer (``_dispatch``) both read it without importing each other."""
from __future__ import annotations

from pathlib import Path

from blackwheel._runtime import record as _record

INFO: dict | None = _record.read(Path(__file__).resolve().with_name(_record.RECORD_NAME), "blackwheel")
