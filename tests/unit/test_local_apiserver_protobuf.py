"""Protobuf request bodies (what kubectl's generators send) read as JSON objects."""

from __future__ import annotations

import pytest

from kuberay_provider.local.apiserver.errors import ApiError
from kuberay_provider.local.apiserver.protobuf import MAGIC, decode_object


def field(number: int, payload: bytes) -> bytes:
    """A length-delimited protobuf field (payloads here stay under 128 bytes)."""
    return bytes([number << 3 | 2, len(payload)]) + payload


def envelope(kind: str, raw: bytes) -> bytes:
    return MAGIC + field(1, field(1, b"v1") + field(2, kind.encode())) + field(2, raw)


def test_a_configmap_as_kubectl_sends_it() -> None:
    metadata = field(1, b"cm1") + field(2, b"") + field(3, b"sample")
    raw = field(1, metadata) + field(2, field(1, b"a") + field(2, b"b")) + field(2, field(1, b"c") + field(2, b"d"))
    assert decode_object(envelope("ConfigMap", raw)) == {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "cm1", "namespace": "sample"},
        "data": {"a": "b", "c": "d"},
    }


def test_a_secret_keeps_bytes_as_base64_and_a_namespace_its_labels() -> None:
    secret = field(1, field(1, b"s")) + field(2, field(1, b"k") + field(2, b"\x00\xff")) + field(3, b"Opaque")
    assert decode_object(envelope("Secret", secret))["data"] == {"k": "AP8="}
    namespace = field(1, field(1, b"ns") + field(11, field(1, b"team") + field(2, b"ray")))
    assert decode_object(envelope("Namespace", namespace))["metadata"] == {"name": "ns", "labels": {"team": "ray"}}


def test_unknown_kinds_and_garbage_are_refused() -> None:
    with pytest.raises(ApiError) as unsupported:
        decode_object(envelope("Deployment", b""))
    assert unsupported.value.code == 415
    with pytest.raises(ApiError) as garbage:
        decode_object(MAGIC + b"\x0a\x7f")
    assert garbage.value.code == 400
