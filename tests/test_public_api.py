"""The public surface: what users import from `fleetledger` exists and nothing else leaks in."""

import fleetledger


def test_all_names_are_importable():
    for name in fleetledger.__all__:
        assert getattr(fleetledger, name) is not None, name


def test_the_documented_names_are_public():
    expected = {
        "Ledger",
        "HttpLedger",
        "UsageEvent",
        "PricedEvent",
        "Reservation",
        "BudgetExceeded",
        "BudgetThrottled",
        "FleetLedgerError",
        "InvalidEvent",
        "InvalidInput",
        "Settings",
    }
    assert expected <= set(fleetledger.__all__)
    assert issubclass(fleetledger.BudgetExceeded, fleetledger.FleetLedgerError)
