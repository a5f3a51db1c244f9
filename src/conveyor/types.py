"""Type aliases shared across conveyor."""

from typing import Any

JsonObject = dict[str, Any]
