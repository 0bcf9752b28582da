"""Request bodies in Kubernetes' protobuf encoding, for the core types kubectl's generators send that way.

client-go's typed clients (``kubectl create namespace|configmap|secret|token``, ``kubectl auth can-i``) post
``application/vnd.kubernetes.protobuf`` and do not retry as JSON on 415, so the server must read it. The
envelope is the magic ``k8s\\0`` then a ``runtime.Unknown`` (typeMeta=1, raw=2); ``raw`` is the object's
message. Only the fields a client may set are decoded (server-owned metadata is discarded anyway); the
field numbers are those of k8s.io/api/core/v1 and k8s.io/apimachinery meta/v1 ``generated.proto``.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

from .errors import ApiError, bad_request

PROTOBUF = "application/vnd.kubernetes.protobuf"
MAGIC = b"k8s\x00"
VARINT, FIXED64, LENGTH_DELIMITED, FIXED32 = 0, 1, 2, 5

# A field is (JSON name, kind): a scalar kind, a message name, "[]" + either for a repeated field, or a map.
Field = tuple[str, str]
MESSAGES: dict[str, dict[int, Field]] = {
    "Unknown": {1: ("typeMeta", "TypeMeta"), 2: ("raw", "raw")},
    "TypeMeta": {1: ("apiVersion", "string"), 2: ("kind", "string")},
    "ObjectMeta": {
        1: ("name", "string"),
        2: ("generateName", "string"),
        3: ("namespace", "string"),
        11: ("labels", "map<string>"),
        12: ("annotations", "map<string>"),
        13: ("ownerReferences", "[]OwnerReference"),
        14: ("finalizers", "[]string"),
    },
    "OwnerReference": {
        1: ("kind", "string"),
        3: ("name", "string"),
        4: ("uid", "string"),
        5: ("apiVersion", "string"),
        6: ("controller", "bool"),
        7: ("blockOwnerDeletion", "bool"),
    },
    "Namespace": {1: ("metadata", "ObjectMeta"), 2: ("spec", "NamespaceSpec")},
    "NamespaceSpec": {1: ("finalizers", "[]string")},
    "ConfigMap": {
        1: ("metadata", "ObjectMeta"),
        2: ("data", "map<string>"),
        3: ("binaryData", "map<bytes>"),
        4: ("immutable", "bool"),
    },
    "Secret": {
        1: ("metadata", "ObjectMeta"),
        2: ("data", "map<bytes>"),
        3: ("type", "string"),
        4: ("stringData", "map<string>"),
        5: ("immutable", "bool"),
    },
    # authentication.k8s.io/v1: what ``kubectl create token`` sends.
    "TokenRequest": {1: ("metadata", "ObjectMeta"), 2: ("spec", "TokenRequestSpec")},
    "TokenRequestSpec": {
        1: ("audiences", "[]string"),
        3: ("boundObjectRef", "BoundObjectReference"),
        4: ("expirationSeconds", "int"),
    },
    "BoundObjectReference": {
        1: ("kind", "string"),
        2: ("apiVersion", "string"),
        3: ("name", "string"),
        4: ("uid", "string"),
    },
    # authorization.k8s.io/v1: what ``kubectl auth can-i`` sends (field and label selectors are not read).
    "SelfSubjectAccessReview": {1: ("metadata", "ObjectMeta"), 2: ("spec", "SelfSubjectAccessReviewSpec")},
    "SelfSubjectAccessReviewSpec": {
        1: ("resourceAttributes", "ResourceAttributes"),
        2: ("nonResourceAttributes", "NonResourceAttributes"),
    },
    "ResourceAttributes": {
        1: ("namespace", "string"),
        2: ("verb", "string"),
        3: ("group", "string"),
        4: ("version", "string"),
        5: ("resource", "string"),
        6: ("subresource", "string"),
        7: ("name", "string"),
    },
    "NonResourceAttributes": {1: ("path", "string"), 2: ("verb", "string")},
    "SelfSubjectRulesReview": {1: ("metadata", "ObjectMeta"), 2: ("spec", "SelfSubjectRulesReviewSpec")},
    "SelfSubjectRulesReviewSpec": {1: ("namespace", "string")},
}
TOP_LEVEL_KINDS = frozenset(
    {"Namespace", "ConfigMap", "Secret", "TokenRequest", "SelfSubjectAccessReview", "SelfSubjectRulesReview"}
)


def _varint(data: bytes, offset: int) -> tuple[int, int]:
    value, shift = 0, 0
    while True:
        if offset >= len(data):
            raise ValueError("truncated varint")
        byte = data[offset]
        value |= (byte & 0x7F) << shift
        offset += 1
        if not byte & 0x80:
            return value, offset
        shift += 7


def wire_fields(data: bytes) -> Iterator[tuple[int, int | bytes]]:
    """(field number, value) of each field: an int for varints, bytes for length-delimited ones."""
    offset = 0
    sizes = {FIXED64: 8, FIXED32: 4}
    while offset < len(data):
        key, offset = _varint(data, offset)
        number, wire_type = key >> 3, key & 7
        if wire_type == VARINT:
            value, offset = _varint(data, offset)
            yield number, value
        elif wire_type == LENGTH_DELIMITED:
            length, offset = _varint(data, offset)
            if offset + length > len(data):
                raise ValueError("truncated field")
            yield number, data[offset : offset + length]
            offset += length
        elif wire_type in sizes:
            offset += sizes[wire_type]  # no decoded field is fixed-width
        else:
            raise ValueError(f"unsupported wire type {wire_type}")


def _map_entry(raw: bytes) -> tuple[str, bytes]:
    entry = {number: value for number, value in wire_fields(raw)}
    key, value = entry.get(1, b""), entry.get(2, b"")
    if not isinstance(key, bytes) or not isinstance(value, bytes):
        raise ValueError("malformed map entry")
    return key.decode(), value


def _decode_item(kind: str, value: int | bytes) -> Any:
    """One value of a (possibly repeated) field: a scalar, or a nested message."""
    if kind == "bool":
        return bool(value)
    if kind == "int":
        if not isinstance(value, int):
            raise ValueError("expected a varint")
        return value
    if not isinstance(value, bytes):
        raise ValueError(f"expected a length-delimited {kind}")
    if kind == "string":
        return value.decode()
    if kind == "raw":
        return value
    return decode_message(kind, value)


def decode_message(name: str, data: bytes) -> dict[str, Any]:
    """The message ``name`` as the JSON object the API would read; empty values are left out (omitempty)."""
    fields = MESSAGES[name]
    result: dict[str, Any] = {}
    for number, value in wire_fields(data):
        if number in fields:
            _merge(result, *fields[number], value)
    return {key: value for key, value in result.items() if value not in ("", False, {}, [], b"")}


def _merge(result: dict[str, Any], json_name: str, kind: str, value: int | bytes) -> None:
    if kind.startswith("map<"):
        key, raw = _map_entry(value if isinstance(value, bytes) else b"")
        result.setdefault(json_name, {})[key] = base64.b64encode(raw).decode() if kind == "map<bytes>" else raw.decode()
    elif kind.startswith("[]"):
        result.setdefault(json_name, []).append(_decode_item(kind[2:], value))
    else:
        result[json_name] = _decode_item(kind, value)


def decode_object(body: bytes) -> dict[str, Any]:
    """A protobuf request body as a JSON object; 415 for a kind this server cannot read that way."""
    if not body.startswith(MAGIC):
        raise bad_request("the protobuf body does not start with the k8s magic number")
    try:
        envelope = decode_message("Unknown", body[len(MAGIC) :])
        type_meta = envelope.get("typeMeta") or {}
        kind = type_meta.get("kind", "")
        if kind not in TOP_LEVEL_KINDS:
            raise ApiError(
                415,
                "UnsupportedMediaType",
                f"the body of the request was in an unknown format - accepted "
                f"media types include: application/json, application/yaml (protobuf {kind or 'object'})",
            )
        return {**type_meta, **decode_message(kind, envelope.get("raw", b""))}
    except (ValueError, UnicodeDecodeError) as error:
        raise bad_request(f"the protobuf body could not be decoded: {error}") from None
