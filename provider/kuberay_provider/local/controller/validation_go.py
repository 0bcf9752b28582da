"""The Go and k8s.io/apimachinery (v0.36.0) helpers whose error strings end up in KubeRay's messages,
ported: strconv.Quote / fmt's %v of a []string, validation.IsDNS1035Label and friends (pkg/util/validation,
pkg/api/validate/content), version.ParseGeneric (pkg/util/version), time.ParseDuration and strconv.Atoi.
"""

from __future__ import annotations

import re

# --- Go formatting --------------------------------------------------------------------------------
_GO_ESCAPES = {"\a": "\\a", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\v": "\\v"}


def go_quote(text: str) -> str:
    """%q of a string (strconv.Quote)."""
    out = ['"']
    for char in text:
        if char in ('"', "\\"):
            out.append("\\" + char)
        elif char in _GO_ESCAPES:
            out.append(_GO_ESCAPES[char])
        elif char.isprintable():
            out.append(char)
        elif ord(char) < 0x80:
            out.append(f"\\x{ord(char):02x}")
        elif ord(char) < 0x10000:
            out.append(f"\\u{ord(char):04x}")
        else:
            out.append(f"\\U{ord(char):08x}")
    return "".join(out) + '"'


def go_list(items: list[str]) -> str:
    """%v of a []string."""
    return "[" + " ".join(items) + "]"


def go_len(text: str) -> int:
    """len() of a Go string counts bytes."""
    return len(text.encode("utf-8", "surrogatepass"))


# --- apimachinery validation (v0.36.0) ------------------------------------------------------------
_DNS1123_LABEL_FMT = "[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_DNS1123_SUBDOMAIN_FMT = _DNS1123_LABEL_FMT + "(\\." + _DNS1123_LABEL_FMT + ")*"
_DNS1035_LABEL_FMT = "[a-z]([-a-z0-9]*[a-z0-9])?"
_LABEL_KEY_FMT = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
_LABEL_VALUE_FMT = "(" + _LABEL_KEY_FMT + ")?"
_DNS1123_LABEL_MSG = (
    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', "
    "and must start and end with an alphanumeric character"
)
_DNS1123_SUBDOMAIN_MSG = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', "
    "and must start and end with an alphanumeric character"
)
_DNS1035_LABEL_MSG = (
    "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an "
    "alphabetic character, and end with an alphanumeric character"
)
_LABEL_KEY_MSG = (
    "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character"
)
_LABEL_VALUE_MSG = (
    "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', "
    "and must start and end with an alphanumeric character"
)


def _matches(fmt: str, value: str) -> bool:
    # Go anchors with ^...$ and its $ is end of text; fullmatch is the same.
    return re.fullmatch(fmt, value) is not None


def regex_error(msg: str, fmt: str, *examples: str) -> str:
    """RegexError (both the validation and the content package spell it the same)."""
    if not examples:
        return f"{msg} (regex used for validation is '{fmt}')"
    shown = " or ".join(f"'{example}', " for example in examples)
    return f"{msg} (e.g. {shown}regex used for validation is '{fmt}')"


def is_dns1123_label(value: str) -> list[str]:
    """validation.IsDNS1123Label."""
    errs = []
    if go_len(value) > 63:
        errs.append("must be no more than 63 characters")
    if not _matches(_DNS1123_LABEL_FMT, value):
        if _matches(_DNS1123_SUBDOMAIN_FMT, value):
            errs.append("must not contain dots")
        else:
            errs.append(regex_error(_DNS1123_LABEL_MSG, _DNS1123_LABEL_FMT, "my-name", "123-abc"))
    return errs


def is_dns1035_label(value: str) -> list[str]:
    """validation.IsDNS1035Label."""
    errs = []
    if go_len(value) > 63:
        errs.append("must be no more than 63 characters")
    if not _matches(_DNS1035_LABEL_FMT, value):
        errs.append(regex_error(_DNS1035_LABEL_MSG, _DNS1035_LABEL_FMT, "my-name", "abc-123"))
    return errs


def _content_dns1123_subdomain(value: str) -> list[str]:
    """content.IsDNS1123Subdomain (its length error says bytes)."""
    errs = []
    if go_len(value) > 253:
        errs.append("must be no more than 253 bytes")
    if not _matches(_DNS1123_SUBDOMAIN_FMT, value):
        errs.append(regex_error(_DNS1123_SUBDOMAIN_MSG, _DNS1123_SUBDOMAIN_FMT, "example.com"))
    return errs


def is_qualified_name(value: str) -> list[str]:
    """validation.IsQualifiedName = content.IsLabelKey."""
    errs: list[str] = []
    parts = value.split("/")
    if len(parts) == 1:
        name = parts[0]
    elif len(parts) == 2:
        prefix, name = parts
        if not prefix:
            errs.append("prefix part must be non-empty")
        else:
            errs += ["prefix part " + msg for msg in _content_dns1123_subdomain(prefix)]
    else:
        return [
            "a valid label key "
            + regex_error(_LABEL_KEY_MSG, _LABEL_KEY_FMT, "MyName", "my.name", "123-abc")
            + " with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"
        ]
    if not name:
        errs.append("name part must be non-empty")
    elif go_len(name) > 63:
        errs.append("name part must be no more than 63 bytes")
    if not _matches(_LABEL_KEY_FMT, name):
        errs.append("name part " + regex_error(_LABEL_KEY_MSG, _LABEL_KEY_FMT, "MyName", "my.name", "123-abc"))
    return errs


def is_valid_label_value(value: str) -> list[str]:
    """validation.IsValidLabelValue = content.IsLabelValue."""
    errs = []
    if go_len(value) > 63:
        errs.append("must be no more than 63 bytes")
    if not _matches(_LABEL_VALUE_FMT, value):
        errs.append(regex_error(_LABEL_VALUE_MSG, _LABEL_VALUE_FMT, "MyValue", "my_value", "12345"))
    return errs


# --- version.ParseGeneric / LessThan --------------------------------------------------------------
# `(.*)*` in Go's pattern is `.*` here: same language, no catastrophic backtracking in Python's engine.
_VERSION_RE = re.compile(r"[\t\n\f\r ]*v?([0-9]+(?:\.[0-9]+)*)(.*)\Z")
_MAX_UINT64 = 2**64 - 1


def parse_generic_version(text: str) -> tuple[int, ...]:
    """version.ParseGeneric: ≥ 2 numeric components, anything after them ignored; ValueError has Go's text."""
    match = _VERSION_RE.match(text)
    if match is None:
        raise ValueError(f"could not parse {go_quote(text)} as version")
    components = match.group(1).split(".")
    if len(components) < 2:
        raise ValueError(f"illegal version string {go_quote(text)}")
    numbers = []
    for index, comp in enumerate(components):
        if index == 0 and comp.startswith("0") and comp != "0":
            raise ValueError(f"illegal zero-prefixed version component {go_quote(comp)} in {go_quote(text)}")
        if int(comp) > _MAX_UINT64:
            raise ValueError(
                f"illegal non-numeric version component {go_quote(comp)} in {go_quote(text)}: "
                f"strconv.ParseUint: parsing {go_quote(comp)}: value out of range"
            )
        numbers.append(int(comp))
    return tuple(numbers)


def version_less_than(version: tuple[int, ...], other: tuple[int, ...]) -> bool:
    """Version.LessThan for generic versions: missing trailing components count as zeros."""
    width = max(len(version), len(other))
    return version + (0,) * (width - len(version)) < other + (0,) * (width - len(other))


# --- time.ParseDuration / strconv.Atoi ------------------------------------------------------------
_UNITS_NS = {
    b"ns": 1,
    b"us": 10**3,
    "µs".encode(): 10**3,
    "μs".encode(): 10**3,
    b"ms": 10**6,
    b"s": 10**9,
    b"m": 60 * 10**9,
    b"h": 3600 * 10**9,
}
_DIGITS = b"0123456789"


def _leading_int(data: bytes) -> tuple[int, bytes]:
    value, index = 0, 0
    while index < len(data) and data[index] in _DIGITS:
        if value > (1 << 63) // 10:
            raise ValueError("time: bad [0-9]*")
        value = value * 10 + data[index] - 48
        if value > 1 << 63:
            raise ValueError("time: bad [0-9]*")
        index += 1
    return value, data[index:]


def _leading_fraction(data: bytes) -> tuple[int, float, bytes]:
    value, scale, index, overflow = 0, 1.0, 0, False
    while index < len(data) and data[index] in _DIGITS:
        if not overflow:
            if value > ((1 << 63) - 1) // 10 or value * 10 + data[index] - 48 > 1 << 63:
                overflow = True
            else:
                value, scale = value * 10 + data[index] - 48, scale * 10
        index += 1
    return value, scale, data[index:]


def parse_go_duration(text: str) -> int:
    """time.ParseDuration in nanoseconds; ValueError when Go would refuse the text."""
    data, negative = text.encode("utf-8", "surrogatepass"), False
    if data[:1] in (b"-", b"+"):
        negative, data = data[:1] == b"-", data[1:]
    if data == b"0":
        return 0
    if not data:
        raise ValueError(f"time: invalid duration {go_quote(text)}")
    total = 0
    while data:
        if not (data[:1] == b"." or data[0] in _DIGITS):
            raise ValueError(f"time: invalid duration {go_quote(text)}")
        before = len(data)
        whole, data = _leading_int(data)
        has_whole, fraction, scale, has_fraction = before != len(data), 0, 1.0, False
        if data[:1] == b".":
            data = data[1:]
            before = len(data)
            fraction, scale, data = _leading_fraction(data)
            has_fraction = before != len(data)
        if not has_whole and not has_fraction:
            raise ValueError(f"time: invalid duration {go_quote(text)}")
        end = 0
        while end < len(data) and not (data[end : end + 1] == b"." or data[end] in _DIGITS):
            end += 1
        unit = _UNITS_NS.get(data[:end])
        if end == 0 or unit is None:
            raise ValueError(f"time: missing or unknown unit in duration {go_quote(text)}")
        data = data[end:]
        if whole > (1 << 63) // unit:
            raise ValueError(f"time: invalid duration {go_quote(text)}")
        whole *= unit
        if fraction > 0:
            whole += int(float(fraction) * (float(unit) / scale))
            if whole > 1 << 63:
                raise ValueError(f"time: invalid duration {go_quote(text)}")
        total += whole
        if total > 1 << 63:
            raise ValueError(f"time: invalid duration {go_quote(text)}")
    if negative:
        return -total
    if total > (1 << 63) - 1:
        raise ValueError(f"time: invalid duration {go_quote(text)}")
    return total


def go_atoi(text: str) -> int:
    """strconv.Atoi: optional sign, ASCII digits only, within int64."""
    if not re.fullmatch(r"[+-]?[0-9]+", text):
        raise ValueError(f"strconv.Atoi: parsing {go_quote(text)}: invalid syntax")
    value = int(text)
    if not -(1 << 63) <= value < 1 << 63:
        raise ValueError(f"strconv.Atoi: parsing {go_quote(text)}: value out of range")
    return value
