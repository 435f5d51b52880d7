"""Decimal strings from vendors into integer minor units, exactly (money is never a float)."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

# ISO 4217 currencies whose minor unit is not 1/100.
_EXPONENT: dict[str, int] = {
    **dict.fromkeys(
        (
            "BIF",
            "CLP",
            "DJF",
            "GNF",
            "ISK",
            "JPY",
            "KMF",
            "KRW",
            "PYG",
            "RWF",
            "UGX",
            "UYI",
            "VND",
            "VUV",
            "XAF",
            "XOF",
            "XPF",
        ),
        0,
    ),
    **dict.fromkeys(("BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"), 3),
    "CLF": 4,
    "UYW": 4,
}


class MoneyError(ValueError):
    """An amount that cannot be represented exactly in the currency's minor unit."""


def exponent(currency: str) -> int:
    return _EXPONENT.get(currency.upper(), 2)


def to_minor(amount: str | int | Decimal | None, currency: str) -> int:
    """`"398.00"`, `"USD"` → `39800`. Rejects floats and amounts finer than the minor unit."""
    if amount is None or amount == "":
        return 0
    if isinstance(amount, float):
        raise MoneyError(f"amount {amount!r} is a float; send a decimal string")
    try:
        value = Decimal(str(amount).strip())
    except InvalidOperation as exc:
        raise MoneyError(f"amount {amount!r} is not a decimal number") from exc
    if not value.is_finite():
        raise MoneyError(f"amount {amount!r} is not finite")
    scaled = value.scaleb(exponent(currency))
    if scaled != scaled.to_integral_value():
        raise MoneyError(f"amount {amount!r} has more decimals than {currency} allows")
    return int(scaled)


def from_minor(minor: int, currency: str) -> str:
    """`39800`, `"USD"` → `"398.00"` (for display and for vendor APIs that take strings)."""
    exp = exponent(currency)
    if exp == 0:
        return str(minor)
    return f"{Decimal(minor).scaleb(-exp):.{exp}f}"
