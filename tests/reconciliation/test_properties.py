"""Property: whatever the two sides hold, a cell's parts sum exactly to its drift."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from fleetledger.pricing import Pricer
from fleetledger.reconciliation.compare import CLASSES, Cell, _classify

PRICER = Pricer()
counts = st.integers(min_value=0, max_value=10**9)
nanos = st.integers(min_value=0, max_value=10**12)


@st.composite
def cells(draw):
    model = draw(st.sampled_from(["gpt-4o", "claude-sonnet-4-5", "no-such-model-anywhere", ""]))
    cell = Cell(date(2026, 10, 14), "openai" if model.startswith("gpt") else "anthropic", model, "k")
    cell.raw_model = model or None
    for side in (cell.provider_tokens, cell.ledger_tokens):
        reads, writes, extra = draw(counts), draw(counts), draw(counts)
        side.update(
            input_tokens=reads + writes + extra,
            cache_read_tokens=reads,
            cache_write_tokens=writes,
            output_tokens=draw(counts),
        )
    for token_type in cell.ledger_priced_tokens:
        cell.ledger_priced_tokens[token_type] = draw(counts)
        cell.ledger_bucket_nanos[token_type] = draw(nanos)
    cell.ledger_other_nanos = draw(nanos)
    cell.ledger_estimate_nanos = draw(nanos)
    cell.ledger_requests = draw(st.integers(min_value=0, max_value=10**6))
    cell.provider_requests = draw(st.integers(min_value=0, max_value=10**6))
    cell.provider_cost_nanos = draw(st.one_of(st.none(), nanos))
    return cell


@settings(max_examples=300, deadline=None)
@given(
    cell=cells(),
    usage_known=st.booleans(),
    billed_known=st.booleans(),
    tolerance=st.sampled_from(["0", "0.0001", "0.01"]),
)
def test_parts_sum_exactly_to_the_drift(cell, usage_known, billed_known, tolerance):
    if billed_known and cell.provider_cost_nanos is None:
        cell.provider_cost_nanos = 0
    if not billed_known and not usage_known:
        billed_known = True  # a compared day has one or the other
        cell.provider_cost_nanos = cell.provider_cost_nanos or 0
    _classify(cell, PRICER, usage_known, billed_known, Decimal(tolerance))
    assert sum(cell.parts.values()) == cell.drift_nanos
    assert set(cell.parts) <= {*CLASSES, "unexplained"}
    assert cell.classification in {*CLASSES, "unexplained"}
    if cell.classification != "matched":
        assert abs(cell.parts[cell.classification]) > cell.tolerance_nanos
    assert all(abs(n) > cell.tolerance_nanos for name, n in cell.parts.items() if name != "matched")
