"""Just enough of Kubernetes resource.Quantity to sum pod resources (CalculateDesiredResources)."""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal

_BINARY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_DECIMAL = {
    "n": Decimal("1e-9"),
    "u": Decimal("1e-6"),
    "m": Decimal("0.001"),
    "": Decimal(1),
    "k": Decimal(10**3),
    "M": Decimal(10**6),
    "G": Decimal(10**9),
    "T": Decimal(10**12),
    "P": Decimal(10**15),
    "E": Decimal(10**18),
}


def parse_quantity(text: str | int | float) -> tuple[Decimal, bool]:
    """(value, is_binary_format)."""
    text = str(text).strip()
    for suffix, factor in _BINARY.items():
        if text.endswith(suffix):
            return Decimal(text[: -len(suffix)]) * factor, True
    for suffix in ("n", "u", "m", "k", "M", "G", "T", "P", "E"):
        if text.endswith(suffix):
            return Decimal(text[: -len(suffix)]) * _DECIMAL[suffix], False
    return Decimal(text), False


def format_quantity(value: Decimal, binary: bool) -> str:
    """Canonical form: the largest suffix that keeps an integer (milli-units for fractions)."""
    if value == 0:
        return "0"
    if binary and value == value.to_integral_value():
        for suffix, factor in sorted(_BINARY.items(), key=lambda item: -item[1]):
            if value % factor == 0:
                return f"{int(value / factor)}{suffix}"
        return str(int(value))
    if value != value.to_integral_value():
        return f"{int((value * 1000).to_integral_value())}m"
    for suffix in ("E", "P", "T", "G", "M", "k"):
        if value % _DECIMAL[suffix] == 0:
            return f"{int(value / _DECIMAL[suffix])}{suffix}"
    return str(int(value))


def sum_quantities(quantities: Iterable[tuple[str, int]]) -> str:
    """Sum (quantity, multiplier) pairs; the first operand's format wins, as Quantity.Add keeps it."""
    total = Decimal(0)
    binary: bool | None = None
    for text, times in quantities:
        value, is_binary = parse_quantity(text)
        binary = is_binary if binary is None else binary
        total += value * times
    return format_quantity(total, bool(binary))
