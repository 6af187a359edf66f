"""Structured answers: `--schema` and `--schema-multi`.

A schema is a JSON Schema (a file, or inline JSON) or the concise form `llm` users know:
`name, age int, bio: a short bio` (fields split by commas, or by newlines when there are any;
types int, float, str, bool; str by default; text after a colon describes the field).
`--schema-multi` asks for a list of such objects, returned as `{"items": [...]}`.

The root model is told the schema and gives its answer through FINAL (a dict, or JSON text).
`AnswerShape.check` parses and validates it with `jsonschema`; a mismatch goes back to the model
as one message naming each problem by its JSON path. Evidence rides along in a `_cite` key of any
object: `{"notice_days": 180, "_cite": {"notice_days": "[contract.pdf p.7]"}}` (a field's value
may be a string or a list of strings; `_cite` may also be one string for the whole object).
`_cite` keys are removed before validation, so a schema with `additionalProperties: false` still
works, and their citations are checked like prose citations, each labelled with its field.

jsonschema is imported only here, and this module only when a schema is used.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from rlmcli.errors import UsageError

CITE_KEY = "_cite"
ATTEMPTS = 3  # corrections the model gets after its first invalid answer
MAX_ERRORS = 5  # problems named in one correction message
MAX_LITERAL = 200_000  # characters of a Python-literal answer we try to read
TYPES = {"int": "integer", "integer": "integer", "float": "number", "number": "number", "str": "string",
         "string": "string", "bool": "boolean", "boolean": "boolean"}
_FIELD = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)(?:\s+([A-Za-z]+))?\s*$")


def concise(spec: str) -> dict[str, Any]:
    """`name, age int, bio: a short bio` -> an object schema with every field required."""
    parts = [p.strip() for p in (spec.splitlines() if "\n" in spec.strip() else spec.split(","))]
    properties: dict[str, Any] = {}
    for part in filter(None, parts):
        head, colon, description = part.partition(":")
        m = _FIELD.match(head.strip())
        if m is None:
            raise UsageError(f"--schema: cannot read the field {part!r}: write `name`, `name TYPE` or `name TYPE: description`")
        name, kind = m.group(1), (m.group(2) or "str").lower()
        if kind not in TYPES:
            raise UsageError(f"--schema: unknown type {kind!r} for {name!r}: use int, float, str or bool")
        if name == CITE_KEY:
            raise UsageError(f"--schema: {CITE_KEY!r} is reserved for citations")
        if name in properties:
            raise UsageError(f"--schema: the field {name!r} is named twice")
        field: dict[str, Any] = {"type": TYPES[kind]}
        if colon and description.strip():
            field["description"] = description.strip()
        properties[name] = field
    if not properties:
        raise UsageError("--schema: no fields given")
    return {"type": "object", "properties": properties, "required": list(properties)}


def load_schema(spec: str) -> dict[str, Any]:
    """A JSON Schema from a file path, inline JSON, or the concise form; checked before any work."""
    text = spec.strip()
    source = "--schema"
    if not text:
        raise UsageError("--schema is empty")
    if not text.startswith("{") and "\n" not in text and (text.endswith(".json") or Path(text).is_file()):
        path = Path(text).expanduser()
        try:
            text, source = path.read_text(encoding="utf-8").strip(), str(path)
        except OSError as exc:
            raise UsageError(f"--schema {spec}: {exc.strerror or exc}") from None
    if text.startswith("{"):
        try:
            schema = json.loads(text)
        except ValueError as exc:
            raise UsageError(f"{source}: not valid JSON ({exc})") from None
    else:
        schema = concise(text)
    check_schema(schema, source)
    return schema  # type: ignore[no-any-return]


def check_schema(schema: Any, source: str = "--schema") -> None:
    from jsonschema import SchemaError
    from jsonschema.validators import validator_for

    if not isinstance(schema, dict):
        raise UsageError(f"{source}: a schema is a JSON object")
    try:
        validator_for(schema).check_schema(schema)
    except SchemaError as exc:
        raise UsageError(f"{source}: not a valid JSON Schema: {exc.message} (at {exc.json_path})") from None


def multi(schema: dict[str, Any]) -> dict[str, Any]:
    """The `--schema-multi` wrapper: a list of objects under `items`, as `llm` returns it."""
    return {"type": "object", "properties": {"items": {"type": "array", "items": schema}}, "required": ["items"]}


def fields_of(schema: dict[str, Any], is_multi: bool) -> list[str]:
    """The columns of a table of answers: the (item) object's properties, in schema order."""
    target = schema["properties"]["items"]["items"] if is_multi else schema
    props = target.get("properties") if isinstance(target, dict) else None
    return list(props) if isinstance(props, dict) else []


def parse_answer(text: str) -> tuple[Any, str | None]:
    """(value, None) from FINAL's text: JSON, JSON in a ```json fence or with prose around it, or
    a Python literal (FINAL(str(d)) of a dict); (None, what is wrong) otherwise."""
    body = text.strip()
    fenced = re.fullmatch(r"```[A-Za-z]*\s*\n(.*?)\n?```", body, flags=re.S)
    if fenced:
        body = fenced.group(1).strip()
    try:
        return json.loads(body), None
    except RecursionError:
        return None, "it is nested too deeply"
    except ValueError as exc:
        problem = str(exc)
    if len(body) <= MAX_LITERAL and body[:1] in "{[":
        import ast

        try:
            value = ast.literal_eval(body)
            json.dumps(value)  # only what JSON can carry
            return value, None
        except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
            pass
    start, end = body.find("{"), body.rfind("}")
    if 0 <= start < end:
        try:
            return json.loads(body[start:end + 1]), None
        except (ValueError, RecursionError):
            pass
    return None, f"it is not JSON ({problem})"


def split_cites(value: Any, path: str = "") -> tuple[Any, list[tuple[str, str]]]:
    """(the value without `_cite` keys, [(field path, citation text)]). Strings inside the answer
    that cite pages count too, under their own path."""
    cites: list[tuple[str, str]] = []
    if isinstance(value, dict):
        clean: dict[str, Any] = {}
        for key, item in value.items():
            if key == CITE_KEY:
                cites += list(_cite_entries(item, path))
                continue
            clean[key], inner = split_cites(item, f"{path}.{key}" if path else str(key))
            cites += inner
        return clean, cites
    if isinstance(value, list):
        out = []
        for i, item in enumerate(value):
            cleaned, inner = split_cites(item, f"{path}[{i}]")
            out.append(cleaned)
            cites += inner
        return out, cites
    if isinstance(value, str) and "[" in value and "]" in value:
        cites.append((path, value))
    return value, cites


def _cite_entries(raw: Any, path: str) -> Iterator[tuple[str, str]]:
    if isinstance(raw, str):
        yield path, raw
    elif isinstance(raw, list):
        for item in raw:
            yield from _cite_entries(item, path)
    elif isinstance(raw, dict):
        for key, item in raw.items():
            yield from _cite_entries(item, f"{path}.{key}" if path else str(key))


class AnswerShape:
    """What FINAL must hold: told to the model, checked on every FINAL, applied to the result."""

    attempts = ATTEMPTS

    def __init__(self, schema: dict[str, Any], is_multi: bool = False) -> None:
        from jsonschema.validators import validator_for

        self.item_schema = schema
        self.is_multi = is_multi
        self.schema = multi(schema) if is_multi else schema
        self.validator = validator_for(self.schema)(self.schema)

    @classmethod
    def from_spec(cls, spec: str | dict[str, Any], is_multi: bool = False) -> AnswerShape:
        if isinstance(spec, dict):
            check_schema(spec)
            return cls(spec, is_multi)
        return cls(load_schema(spec), is_multi)

    @property
    def fields(self) -> list[str]:
        return fields_of(self.schema, self.is_multi)

    @property
    def instructions(self) -> str:
        """Appended to the question: the schema, how to hand it over, how to cite each field."""
        what = ("a JSON object whose `items` list holds one object per item found (one per clause, party, "
                "segment, filing: whatever the question counts)" if self.is_multi else "one JSON object")
        return (f"Answer format: FINAL must receive {what}, valid under this JSON Schema:\n"
                f"JSON Schema: {json.dumps(self.schema, ensure_ascii=False)}\n"
                "Call FINAL with a Python dict, FINAL({...}), or with JSON text. Give numbers as numbers, not "
                "strings. For each field put its evidence in a \"_cite\" key of the same object, mapping the "
                "field to citations: {\"notice_days\": 90, \"_cite\": {\"notice_days\": "
                "\"\\\"ninety (90) days\\\" [contract.pdf p.7]\"}} (quote short phrases exactly; \"_cite\" is "
                "removed before validation). If the documents do not hold a value, use null when the schema "
                "allows it; never invent one.")

    def errors(self, value: Any) -> list[Any]:
        return sorted(self.validator.iter_errors(value), key=lambda e: [str(p) for p in e.absolute_path])

    def check(self, answer: str) -> str | None:
        """None when FINAL's text is a valid answer; else the one message that tells the model what to fix."""
        value, problem = parse_answer(answer)
        if problem is not None:
            return (f"Your FINAL answer was rejected: {problem}. Call FINAL again with {self._what()} valid under "
                    "the JSON Schema given with the question, as a dict: FINAL({...}).")
        clean, _ = split_cites(value)
        found = self.errors(clean)
        if not found:
            return None
        lines = [f"- at {e.json_path}: {_short(e.message)}" for e in found[:MAX_ERRORS]]
        more = f"\n(and {len(found) - MAX_ERRORS} more problems)" if len(found) > MAX_ERRORS else ""
        return ("Your FINAL answer does not match the required JSON Schema:\n" + "\n".join(lines) + more +
                "\nFix these and call FINAL again with the whole corrected object (keep the \"_cite\" keys).")

    def _what(self) -> str:
        return "an object whose `items` list holds the objects" if self.is_multi else "one JSON object"

    def apply(self, answer: str) -> tuple[Any, list[tuple[str, str]], list[str]]:
        """(data, [(field, citation text)], problems) from the run's last answer. `data` is the whole
        answer when valid; otherwise only what was valid (the fields, or the items, without errors)."""
        value, problem = parse_answer(answer)
        if problem is not None:
            return None, [], [f"the answer is not a JSON object: {problem}"]
        clean, cites = split_cites(value)
        found = self.errors(clean)
        if not found:
            return clean, cites, []
        problems = [f"{e.json_path}: {_short(e.message)}" for e in found]
        kept, kept_cites = split_cites(_valid_part(value, found, self.is_multi))  # the raw value: paths align
        return kept, kept_cites, problems


def _short(message: str, limit: int = 300) -> str:
    return message if len(message) <= limit else message[:limit] + "…"


def _top(path: tuple[Any, ...], is_multi: bool) -> tuple[Any, ...]:
    return tuple(path[:2]) if is_multi and path and path[0] == "items" else tuple(path[:1])


def _valid_part(value: Any, found: list[Any], is_multi: bool) -> Any:
    """Drop the fields (or, for --schema-multi, the items) that an error points into."""
    if not isinstance(value, dict):
        return None
    bad = {_top(tuple(e.absolute_path), is_multi) for e in found if e.absolute_path}
    if is_multi:
        items = value.get("items")
        if not isinstance(items, list) or ("items",) in bad:
            return {"items": []}
        return {**value, "items": [it for i, it in enumerate(items) if ("items", i) not in bad]}
    return {k: v for k, v in value.items() if (k,) not in bad}


def apply_shape(shape: AnswerShape, result: Any, ws: Any) -> None:
    """After a run: the validated object (or what of it was valid) into `result.data`, the answer
    as its JSON text, and each field's citations checked against the workspace."""
    from rlmcli.answer import check_citations
    from rlmcli.records import Limit, RunStatus

    if result.answer:
        data, cites, problems = shape.apply(result.answer)
    else:
        data, cites, problems = None, [], ["the run ended without an answer"]
    result.data, result.schema_errors = data, problems
    if problems and result.status is RunStatus.ANSWERED:
        result.status, result.limit = RunStatus.PARTIAL, Limit.SCHEMA
    if data is not None:
        result.answer = json.dumps(data, ensure_ascii=False)
    result.citations = []
    for name, text in cites:
        for citation in check_citations(text, ws):
            citation.field_name = name or "(whole answer)"
            result.citations.append(citation)


def field_sources_text(citations: list[Any], ws: Any) -> str:
    """The Sources list of a structured answer: each field, then its places as `ask` shows them."""
    from rlmcli.answer import sources_text

    if not citations:
        return ""
    lines = ["Sources:"]
    for name in dict.fromkeys(c.field_name for c in citations):
        lines.append(f"  {name}:")
        shown = sources_text([c for c in citations if c.field_name == name], ws).splitlines()[1:]
        lines += ["  " + line for line in shown]
    return "\n".join(lines)


def shape_of_flags(schema: str | None, schema_multi: str | None) -> AnswerShape | None:
    """`--schema S` / `--schema-multi S` (one of them at most) as an AnswerShape, or None."""
    if schema is not None and schema_multi is not None:
        raise UsageError("give --schema or --schema-multi, not both")
    if schema_multi is not None:
        return AnswerShape.from_spec(schema_multi, True)
    return AnswerShape.from_spec(schema) if schema is not None else None
