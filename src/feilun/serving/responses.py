"""The JSON response of the OpenAI routes, rendered by orjson."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi.responses import JSONResponse


class FastJSONResponse(JSONResponse):
    """Starlette's compact UTF-8 JSON, rendered by orjson (several times faster)."""

    def render(self, content: Any) -> bytes:
        """The body's bytes; `json` renders what orjson cannot (an integer over 64 bits)."""
        try:
            return orjson.dumps(content, option=orjson.OPT_NON_STR_KEYS)
        except orjson.JSONEncodeError:
            return super().render(content)
