"""What calls send and receive: prompts several times their peers' (``prompt_trim``), answers past the
operation's 95th percentile of output tokens (``output_cap``).
"""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction
from typing import TYPE_CHECKING

from fleetledger.analytics.recommendations.mixes import Call, Finding, group_by, reprice
from fleetledger.analytics.recommendations.recommendation import percent

if TYPE_CHECKING:
    from fleetledger.ledger.facade import Ledger

__all__ = ["prompt_trims", "output_caps"]


def _median(values: Sequence[Fraction]) -> Fraction:
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def prompt_trims(
    ledger: Ledger, calls: list[Call], *, ratio: int = 2, min_calls: int = 5, min_peers: int = 3
) -> list[Finding]:
    found = []
    for operation, op_calls in group_by(calls, lambda c: c.operation).items():
        by_agent = {a: g for a, g in group_by(op_calls, lambda c: c.agent).items() if a and len(g) >= min_calls}
        means = {a: Fraction(sum(c.input for c in g), len(g)) for a, g in by_agent.items()}
        if len(means) < min_peers or not any(means.values()):
            continue
        for agent, mean in sorted(means.items()):
            peers = [m for a, m in means.items() if a != agent]
            target = _median(peers)
            if not target or mean <= ratio * target:
                continue
            shrink = target / mean

            def trimmed(call: Call, shrink: Fraction = shrink) -> dict[str, int]:
                def cut(n: int) -> int:
                    return n * shrink.numerator // shrink.denominator

                return call.usage(
                    input=cut(call.input), cache_read=cut(call.cache_read), cache_write=cut(call.cache_write)
                )

            group = by_agent[agent]
            optimized = reprice(ledger, group, usage=trimmed)
            current = sum(c.cost for c in group)
            if optimized is None or optimized >= current:
                continue
            found.append(
                Finding(
                    "prompt_trim",
                    {
                        "operation": operation,
                        "agent": agent,
                        "agents": [agent],
                        "input_tokens_per_request": str(round(mean)),
                        "peer_median_input_tokens": str(round(target)),
                    },  # fmt: skip
                    f"Trim {agent}'s {operation or 'unlabelled'} prompts: {round(mean)} input tokens per "
                    f"request vs {round(target)} for its peers",
                    current,
                    optimized,
                    "none expected if removed context is redundant; verify with an evaluation set before rollout",
                    [
                        "Compare the agent's prompt template and retrieved context with a peer's for the operation.",
                        "Remove duplicated instructions, cap retrieved documents / chat history, summarise history.",
                        "Evaluate the new prompt on recent requests, then release it as a new agent version.",
                    ],
                    ["Release the previous prompt version again (keep it in version control)."],
                    {"operation": [operation], "agent": [agent]},
                )
            )
    return found


def output_caps(ledger: Ledger, calls: list[Call], *, min_share: Fraction = Fraction(20, 100)) -> list[Finding]:
    found = []
    for operation, op_calls in group_by(calls, lambda c: c.operation).items():
        outputs = sorted(c.output for c in op_calls if c.output > 0)
        if len(outputs) < 20:
            continue
        cap = outputs[(len(outputs) * 95) // 100 - 1]  # the fleet's 95th percentile for the operation
        if cap <= 0:
            continue
        for agent, group in sorted(group_by(op_calls, lambda c: c.agent).items(), key=lambda kv: str(kv[0])):
            if not agent:
                continue
            over = [c for c in group if c.output > cap]
            if not over or Fraction(len(over), len(group)) < min_share:
                continue

            def capped(call: Call, cap: int = cap) -> dict[str, int]:
                if call.output <= cap:
                    return call.usage()
                return call.usage(output=cap, reasoning=call.reasoning * cap // call.output)

            optimized = reprice(ledger, group, usage=capped)
            current = sum(c.cost for c in group)
            if optimized is None or optimized >= current:
                continue
            share = percent(len(over), len(group))
            found.append(
                Finding(
                    "output_cap",
                    {
                        "operation": operation,
                        "agent": agent,
                        "agents": [agent],
                        "max_output_tokens": cap,
                        "capped_share_percent": str(share),
                    },  # fmt: skip
                    f"Cap {agent}'s {operation or 'unlabelled'} answers at {cap} output tokens",
                    current,
                    optimized,
                    f"{share}% of this agent's answers are longer and would be cut at {cap} tokens; ask for concise "
                    "answers in the prompt so they end naturally",
                    [
                        f"Set max_tokens={cap} on the agent's {operation or 'unlabelled'} calls.",
                        "Ask for concise output in the prompt; handle finish_reason=length (retry or continue).",
                        "Watch truncation rate and user feedback for a week.",
                    ],
                    ["Remove the max_tokens setting."],
                    {"operation": [operation], "agent": [agent]},
                )
            )
    return found
