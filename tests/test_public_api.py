"""The public surface: what users import from `tokenledger` exists and nothing else leaks in."""

import tokenledger


def test_all_names_are_importable():
    for name in tokenledger.__all__:
        assert getattr(tokenledger, name) is not None, name


def test_the_documented_names_are_public():
    expected = {
        "Ledger",
        "HttpLedger",
        "UsageEvent",
        "PricedEvent",
        "Reservation",
        "BudgetExceeded",
        "BudgetThrottled",
        "TokenLedgerError",
        "InvalidEvent",
        "InvalidInput",
        "Settings",
    }
    assert expected <= set(tokenledger.__all__)
    assert issubclass(tokenledger.BudgetExceeded, tokenledger.TokenLedgerError)
