"""Hypothesis strategies for inputs anyone can write: any text, JSON values (some no encoder
writes), provider URL names and instance nodes, for the totality properties."""

from __future__ import annotations

import contextlib
import json
import os
from typing import Any

from hypothesis import strategies as st

from sidecar import instances
from testbed.dubbo_url import java_url_encode
from tests.unit.scenarios import instance_json

# Examples per property, set here so that the figures in reports are these; FUZZ_EXAMPLES
# runs a longer campaign (e.g. FUZZ_EXAMPLES=20000).
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "1000"))

any_char = st.characters(exclude_categories=())  # surrogates included
any_text = st.text(any_char, max_size=80)
digits = st.text(st.sampled_from("0123456789²³¹٣੩\uff10"), min_size=1, max_size=8)
huge_numbers = st.sampled_from(
    [2**63, -(2**63) - 1, 2**64, 10**400, -(10**400), 1e308, -1e308, 5e-324]
)
# Tokens json.dumps cannot write but a registry client can: replaced into the dumped text.
RAW_TOKENS = {"__BIG__": "1e999", "__NEG_BIG__": "-1e999", "__DIGITS__": "1" * 5000}
raw_tokens = st.sampled_from(sorted(RAW_TOKENS))
json_leaves = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | huge_numbers
    | any_text
    | digits
    | raw_tokens
)
json_values = st.recursive(
    json_leaves,
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            any_text | st.sampled_from(["port", "protocol", "id"]), children, max_size=4
        )
    ),
    max_leaves=12,
)


def dumped(value: Any) -> bytes:
    """JSON text of ``value`` (NaN and Infinity as Python writes them, raw tokens spliced in),
    in UTF-8 with lone surrogates kept as the bytes a careless encoder writes."""
    text = json.dumps(value, ensure_ascii=False)
    for token, raw in RAW_TOKENS.items():
        text = text.replace(f'"{token}"', raw)
    return text.encode("utf-8", "surrogatepass")


valid_names = st.builds(
    lambda host, port, tail: java_url_encode(f"dubbo://{host}:{port}/com.x.Svc?{tail}"),
    st.sampled_from(["172.17.0.5", "[fd00::5]", "provider.local", "10.0.0.1"]),
    st.integers(1, 65535),
    st.text(max_size=40).filter(lambda t: not any("\ud800" <= c <= "\udfff" for c in t)),
)
url_names = (
    any_text
    | st.binary(max_size=80).map(lambda b: b.decode("latin-1"))
    | valid_names
    | st.builds(
        lambda p, d: f"{p}%3A%2F%2F10.0.0.5%3A{d}%2Fx", st.sampled_from(["dubbo", "x"]), digits
    )
    | st.builds(lambda a, b: a + b, valid_names, any_text)
    | st.builds(lambda a, b: a[: len(a) // 2] + b, valid_names, any_text)
)


INSTANCE_PATHS: list[tuple[str, ...]] = [
    ("name",),
    ("id",),
    ("address",),
    ("port",),
    ("sslPort",),
    ("payload",),
    ("payload", "id"),
    ("payload", "metadata"),
    ("payload", "metadata", instances.ENDPOINTS),
    ("payload", "metadata", instances.METADATA_SERVICE),
    ("registrationTimeUTC",),
]
# Inside the two JSON strings of the metadata: the whole document, an entry, or its port.
EMBEDDED_PATHS: list[tuple[str, tuple[Any, ...]]] = [
    (instances.ENDPOINTS, ()),
    (instances.ENDPOINTS, (0,)),
    (instances.ENDPOINTS, (0, "port")),
    (instances.ENDPOINTS, (1, "port")),
    (instances.METADATA_SERVICE, ()),
    (instances.METADATA_SERVICE, ("port",)),
]


def _set(doc: Any, path: tuple[Any, ...], value: Any) -> Any:
    """``doc`` with the value at ``path`` replaced (unchanged where the path is gone)."""
    if not path:
        return value
    with contextlib.suppress(TypeError, KeyError, IndexError):
        doc[path[0]] = _set(doc[path[0]], path[1:], value)
    return doc


@st.composite
def instance_nodes(draw: st.DrawFn) -> tuple[str, bytes]:
    """A Dubbo 3 instance with fields, or whole sub-documents, replaced by any JSON value,
    including inside its embedded JSON strings; sometimes plain random bytes."""
    if draw(st.integers(0, 9)) == 0:
        return draw(any_text), draw(st.binary(max_size=200))
    doc: Any = instance_json()
    for _ in range(draw(st.integers(1, 3))):
        if draw(st.booleans()):
            doc = _set(doc, draw(st.sampled_from(INSTANCE_PATHS)), draw(json_values))
            continue
        key, inner = draw(st.sampled_from(EMBEDDED_PATHS))
        try:
            embedded = _set(json.loads(doc["payload"]["metadata"][key]), inner, draw(json_values))
        except (ValueError, TypeError, KeyError):
            continue
        text = dumped(embedded).decode("utf-8", "surrogatepass")
        doc = _set(doc, ("payload", "metadata", key), text)
    name = draw(st.sampled_from(["172.17.0.5:20880", "[fd00::5]:20880"]) | any_text)
    return name, dumped(doc)
