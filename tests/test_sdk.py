"""The SDK as an agent uses it: threads, asyncio, real SDK response objects, crashes."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import anthropic.types
import openai.types.chat

from fleetledger import Ledger, Settings

FIXTURES = Path(__file__).parent / "providers" / "fixtures"


def make_ledger(tmp_path, **kw) -> Ledger:
    return Ledger(
        settings=Settings(database_url=f"sqlite:///{tmp_path / 'sdk.db'}", spool_dir=tmp_path / "spool"), **kw
    )


def test_record_response_from_real_sdk_objects(tmp_path):
    completion = openai.types.chat.ChatCompletion.model_validate(
        json.loads((FIXTURES / "openai_chat_o4_mini_cached_reasoning.json").read_text())
    )
    message = anthropic.types.Message.model_validate(
        json.loads((FIXTURES / "anthropic_cache_web_search.json").read_text())
    )
    with make_ledger(tmp_path, background=False) as ledger:
        with ledger.attribute(department="research", agent="planner"):
            a = ledger.record_response(completion, operation="plan")
            b = ledger.record_response(message)
        usage = completion.usage
        assert a.event.input_tokens == usage.prompt_tokens
        assert a.event.cache_read_tokens == usage.prompt_tokens_details.cached_tokens
        assert a.event.reasoning_tokens == usage.completion_tokens_details.reasoning_tokens
        assert a.event.department == "research" and a.event.operation == "plan"
        # Anthropic's input_tokens excludes the cache; the ledger's input_tokens counts all of it
        m = message.usage
        assert b.event.input_tokens == m.input_tokens + m.cache_read_input_tokens + m.cache_creation_input_tokens
        assert b.cost.priced and b.cost_usd > 0
        assert ledger.costs(by=["agent"], since="3650d").total["requests"] == 2


def test_threads_record_concurrently_without_loss(tmp_path):
    with make_ledger(tmp_path) as ledger:

        def worker(n: int) -> None:
            with ledger.attribute(agent=f"agent-{n}"):
                for i in range(250):
                    ledger.record(provider="openai", model="gpt-4o-mini", input_tokens=i, output_tokens=1)

        threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        rows = ledger.costs(by=["agent"], since="1d").rows()
        assert sorted(r["agent"] for r in rows) == [f"agent-{n}" for n in range(8)]
        assert all(r["requests"] == 250 for r in rows)


def test_asyncio_tasks_keep_their_own_attribution(tmp_path):
    async def main(ledger: Ledger) -> None:
        async def agent(name: str) -> None:
            with ledger.attribute(agent=name):
                for _ in range(20):
                    ledger.record(provider="openai", model="gpt-4o-mini", input_tokens=10)
                    await asyncio.sleep(0)

        await asyncio.gather(*(agent(f"async-{i}") for i in range(5)))

    with make_ledger(tmp_path) as ledger:
        asyncio.run(main(ledger))
        rows = ledger.costs(by=["agent"], since="1d").rows()
        assert {r["agent"]: r["requests"] for r in rows} == {f"async-{i}": 20 for i in range(5)}


CRASHER = textwrap.dedent("""
    import os, sys
    from fleetledger import Ledger, Settings
    settings = Settings(database_url=sys.argv[1], spool_dir=sys.argv[2], flush_interval_s=60, batch_size=10000)
    ledger = Ledger(settings=settings)
    for i in range(3000):
        ledger.record(event_id=f"crash-{i}", provider="openai", model="gpt-4o", input_tokens=100, output_tokens=10)
    print("recorded", flush=True)
    sys.stdin.read()  # wait to be killed with events still queued in memory
""")


def test_kill_9_loses_nothing_and_replay_charges_once(tmp_path):
    url, spool = f"sqlite:///{tmp_path / 'crash.db'}", tmp_path / "spool"
    proc = subprocess.Popen(
        [sys.executable, "-c", CRASHER, url, str(spool)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout.readline().strip() == "recorded"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)
    proc.stdin.close()
    proc.stdout.close()
    time.sleep(0.1)
    settings = Settings(database_url=url, spool_dir=spool)
    with Ledger(settings=settings, background=False) as probe:
        before = probe.store.count_events()
    assert before < 3000  # the crash did leave events only in memory and the journal
    with Ledger(settings=settings) as ledger:  # a new ledger replays the dead process's journal
        assert ledger.store.count_events() == 3000
        total = ledger.costs(since="1d").total
        assert total["requests"] == 3000 and total["cost_nanos"] == 3000 * 350_000
    with Ledger(settings=settings) as again:  # and replaying is never a double charge
        assert again.store.count_events() == 3000
    assert list(spool.glob("journal-*.jsonl")) == []
