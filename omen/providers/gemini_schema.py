"""OpenAI JSON Schema -> Gemini ``Schema`` (the OpenAPI 3.0 subset ``parameters``/``responseSchema`` take).

Gemini rejects keywords outside its subset (``additionalProperties``, ``$schema``, ``$ref``...) with a
400 that names Google's field, not the client's, so the schema is rewritten here instead:

* kept: type, format (only the ones Gemini accepts per type), title, description, nullable, enum
  (string values), items, properties, required, min/max Items/Length/Properties, minimum, maximum,
  pattern, anyOf, default, example, propertyOrdering;
* ``type: [T, "null"]`` -> ``type: T, nullable: true``; several non-null types -> ``anyOf``;
* ``oneOf`` -> ``anyOf``; a ``{"type": "null"}`` member of anyOf/oneOf -> ``nullable``; ``allOf`` is merged;
* local ``$ref`` (``#/$defs/X``, ``#/definitions/X``) is inlined; a recursive one is refused (Gemini's
  schema cannot express recursion);
* ``const`` -> a one-value ``enum``; non-string enums are dropped (Gemini enums are strings) and the
  allowed values are appended to the description instead;
* everything else (``additionalProperties``, ``$schema``, ``strict``, ``not``, ``if``...) is dropped.
"""

from __future__ import annotations

from typing import Any

from omen.errors import OmenError, bad_request

_TYPES = {
    "string": "STRING",
    "number": "NUMBER",
    "integer": "INTEGER",
    "boolean": "BOOLEAN",
    "array": "ARRAY",
    "object": "OBJECT",
}
# Gemini's API refuses other formats ("only 'enum' and 'date-time' are supported for STRING type")
_FORMATS = {
    "STRING": frozenset({"enum", "date-time"}),
    "NUMBER": frozenset({"float", "double"}),
    "INTEGER": frozenset({"int32", "int64"}),
}
_COPY = (
    "title",
    "description",
    "pattern",
    "minimum",
    "maximum",
    "minItems",
    "maxItems",
    "minLength",
    "maxLength",
    "minProperties",
    "maxProperties",
    "default",
    "example",
)
_MAX_DEPTH = 64


def to_gemini_schema(schema: Any, param: str, *, property_ordering: bool = False) -> dict[str, Any]:
    """Convert ``schema`` (the client's JSON Schema found at ``param``). ``property_ordering`` adds
    Gemini's ``propertyOrdering`` so structured output keeps the declared key order, as OpenAI does."""
    if not isinstance(schema, dict):
        raise bad_request("A JSON schema must be an object.", param=param)
    return _Converter(schema, property_ordering).convert(schema, param, (), 0)


class _Converter:
    def __init__(self, root: dict[str, Any], ordering: bool) -> None:
        self.root = root
        self.ordering = ordering

    def convert(self, schema: Any, param: str, refs: tuple[str, ...], depth: int) -> dict[str, Any]:
        if depth > _MAX_DEPTH:
            raise bad_request(f"The JSON schema is nested more than {_MAX_DEPTH} levels deep.", param=param)
        if schema is True or schema == {}:
            return {}  # "anything": no constraint to express
        if not isinstance(schema, dict):
            raise bad_request("Each JSON schema must be an object.", param=param)
        if "$ref" in schema:
            return self._ref(schema, param, refs, depth)
        if "allOf" in schema:
            return self._all_of(schema, param, refs, depth)
        out: dict[str, Any] = {}
        nullable = schema.get("nullable") is True
        for key in _COPY:
            if key in schema:
                out[key] = schema[key]
        if "example" not in out and isinstance(schema.get("examples"), list) and schema["examples"]:
            out["example"] = schema["examples"][0]

        gemini_type, more_types, type_nullable = _types(schema.get("type"), param)
        nullable = nullable or type_nullable
        if gemini_type is None:
            gemini_type = _infer_type(schema)

        union = schema.get("anyOf", schema.get("oneOf"))
        if union is not None:
            key = "anyOf" if "anyOf" in schema else "oneOf"
            members, union_nullable = self._union(union, f"{param}.{key}", refs, depth)
            nullable = nullable or union_nullable
            if len(members) == 1 and gemini_type is None:
                out = {**members[0], **out}  # outer description etc. win over the member's
                gemini_type = out.pop("type", None)
                nullable = nullable or out.pop("nullable", False) is True
            elif members:
                out["anyOf"] = members

        if gemini_type is not None:
            out["type"] = gemini_type
        self._enum(schema, out, gemini_type)
        fmt = schema.get("format")
        if isinstance(fmt, str) and fmt in _FORMATS.get(gemini_type or "", ()):
            out["format"] = fmt

        if isinstance(schema.get("properties"), dict):
            props = {
                name: self.convert(sub, f"{param}.properties.{name}", refs, depth + 1)
                for name, sub in schema["properties"].items()
            }
            out["properties"] = props
            required = schema.get("required")
            if isinstance(required, list):
                # Gemini refuses a required name that is not a declared property
                kept = [name for name in required if isinstance(name, str) and name in props]
                if kept:
                    out["required"] = kept
            if self.ordering and len(props) > 1:
                out["propertyOrdering"] = list(props)
        items = schema.get("items")
        if isinstance(items, dict):
            out["items"] = self.convert(items, f"{param}.items", refs, depth + 1)
        elif isinstance(items, list) and items:  # tuple form: Gemini has no tuples, accept any listed shape
            members = [self.convert(s, f"{param}.items[{i}]", refs, depth + 1) for i, s in enumerate(items)]
            out["items"] = members[0] if len(members) == 1 else {"anyOf": members}

        if more_types:  # ["string", "integer"]: one anyOf member per type, the other keywords on each
            out.pop("type", None)
            out = {"anyOf": [{**out, "type": t} for t in (gemini_type, *more_types)]}
        if nullable:
            out["nullable"] = True
        return out

    def _ref(self, schema: dict[str, Any], param: str, refs: tuple[str, ...], depth: int) -> dict[str, Any]:
        ref = schema["$ref"]
        where = f"{param}.$ref"
        if not isinstance(ref, str) or not ref.startswith("#"):
            raise bad_request("Only local JSON schema references ('#/$defs/...') are supported.", param=where)
        if ref in refs:
            raise bad_request(
                f"The JSON schema reference '{ref}' is recursive; Gemini schemas cannot express recursion.",
                param=where,
            )
        target: Any = self.root
        for token in ref[1:].split("/")[1:] if ref != "#" else ():
            token = token.replace("~1", "/").replace("~0", "~")
            target = target.get(token) if isinstance(target, dict) else None
        if not isinstance(target, dict):
            raise bad_request(f"The JSON schema reference '{ref}' points nowhere.", param=where)
        resolved = self.convert(target, param, (*refs, ref), depth + 1)
        siblings = {k: v for k, v in schema.items() if k != "$ref"}
        if siblings:
            resolved = {**resolved, **self.convert(siblings, param, refs, depth + 1)}
        return resolved

    def _all_of(self, schema: dict[str, Any], param: str, refs: tuple[str, ...], depth: int) -> dict[str, Any]:
        members = schema["allOf"]
        if not isinstance(members, list):
            raise bad_request("'allOf' must be a list of schemas.", param=f"{param}.allOf")
        rest = {k: v for k, v in schema.items() if k != "allOf"}
        merged: dict[str, Any] = {}
        parts = [self.convert(m, f"{param}.allOf[{i}]", refs, depth + 1) for i, m in enumerate(members)]
        for part in [*parts, self.convert(rest, param, refs, depth + 1)]:
            for key, value in part.items():
                if key == "properties" and isinstance(merged.get(key), dict):
                    merged[key] = {**merged[key], **value}
                elif key == "required" and isinstance(merged.get(key), list):
                    merged[key] = [*merged[key], *(r for r in value if r not in merged[key])]
                else:
                    merged[key] = value
        return merged

    def _union(self, members: Any, param: str, refs: tuple[str, ...], depth: int) -> tuple[list[dict[str, Any]], bool]:
        if not isinstance(members, list):
            raise bad_request("'anyOf'/'oneOf' must be a list of schemas.", param=param)
        out: list[dict[str, Any]] = []
        nullable = False
        for i, member in enumerate(members):
            if isinstance(member, dict) and member.get("type") == "null" and len(member) == 1:
                nullable = True
                continue
            out.append(self.convert(member, f"{param}[{i}]", refs, depth + 1))
        return out, nullable

    @staticmethod
    def _enum(schema: dict[str, Any], out: dict[str, Any], gemini_type: str | None) -> None:
        values = schema.get("enum")
        if "const" in schema:
            values = [schema["const"]]
        if not isinstance(values, list):
            return
        values = [v for v in values if v is not None]  # a null choice is expressed by nullable
        if None in (schema.get("enum") or ()):
            out["nullable"] = True
        if values and all(isinstance(v, str) for v in values) and gemini_type in (None, "STRING"):
            out["enum"] = values
            if gemini_type is None:
                out["type"] = "STRING"
        elif values:
            allowed = ", ".join(str(v) for v in values)
            note = f"Allowed values: {allowed}."
            out["description"] = f"{out['description']} {note}" if out.get("description") else note


def _types(value: Any, param: str) -> tuple[str | None, tuple[str, ...], bool]:
    """(first Gemini type, further types, nullable) of a JSON Schema ``type``."""
    if value is None:
        return None, (), False
    names = value if isinstance(value, list) else [value]
    nullable = "null" in names
    kinds: list[str] = []
    for name in names:
        if name == "null":
            continue
        kind = _TYPES.get(name) if isinstance(name, str) else None
        if kind is None:
            raise _unknown_type(name, param)
        if kind not in kinds:
            kinds.append(kind)
    if not kinds:
        return None, (), nullable
    return kinds[0], tuple(kinds[1:]), nullable


def _infer_type(schema: dict[str, Any]) -> str | None:
    if isinstance(schema.get("properties"), dict):
        return "OBJECT"
    if "items" in schema:
        return "ARRAY"
    return None


def _unknown_type(name: Any, param: str) -> OmenError:
    return bad_request(
        f"Unknown JSON schema type {name!r}; use string, number, integer, boolean, array, object or null.",
        param=f"{param}.type",
    )


__all__ = ["to_gemini_schema"]
