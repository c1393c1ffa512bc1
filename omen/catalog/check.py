"""Refuse a chat request the model cannot serve, before it costs an upstream round trip.

Only a capability known to be missing refuses (``False``, or a known ``max_output_tokens``); an
unknown one (``None``) lets the request through and the upstream decides.

``max_tokens`` / ``max_completion_tokens`` above the model's maximum output is a 400, not a silent
clamp: OpenAI and Anthropic answer such a request with a 400 themselves, so clients already handle
it, while clamping would change what the client asked for without telling it (a client that sized a
budget or a stop condition on its own number gets a shorter answer than it planned for). The catalog
lists each model's largest accepted value, and operators can raise it per model.
"""

from __future__ import annotations

from omen.api.chat import ChatCompletionRequest, ImagePart
from omen.catalog.capabilities import Capabilities
from omen.errors import OmenError, bad_request

CODE = "unsupported_capability"


def _unsupported(model: str, what: str, capability: str, param: str) -> OmenError:
    return bad_request(
        f"The model '{model}' does not support {what} (capability '{capability}').", param=param, code=CODE
    )


def first_image(request: ChatCompletionRequest) -> str | None:
    """The param path of the first image part, if any."""
    for i, msg in enumerate(request.messages):
        content = getattr(msg, "content", None)
        if isinstance(content, list):
            for j, part in enumerate(content):
                if isinstance(part, ImagePart):
                    return f"messages[{i}].content[{j}]"
    return None


def check_chat(caps: Capabilities, model: str, request: ChatCompletionRequest) -> None:
    """Raise a 400 naming the capability if ``request`` needs one ``caps`` says the model lacks."""
    if caps.vision is False:
        where = first_image(request)
        if where is not None:
            raise _unsupported(model, "images", "vision", where)
    if caps.tools is False:
        if request.tools:
            raise _unsupported(model, "tools", "tools", "tools")
        if request.functions:
            raise _unsupported(model, "functions", "tools", "functions")
    if caps.json_mode is False:
        kind = (request.response_format or {}).get("type")
        if kind in ("json_object", "json_schema"):
            raise _unsupported(model, f"JSON mode (response_format '{kind}')", "json_mode", "response_format")
    limit = caps.max_output_tokens
    if limit is not None:
        for param in ("max_completion_tokens", "max_tokens"):
            asked = getattr(request, param)
            if asked is not None and asked > limit:
                raise bad_request(
                    f"The model '{model}' generates at most {limit} tokens; {param} is {asked} "
                    f"(capability 'max_output_tokens').",
                    param=param,
                    code=CODE,
                )
