"""A realistic, deterministic synthetic agent fleet, with the anomalies it contains written down.

The demo data exists so that every report, detector and dashboard of fleetledger can be shown, and
tested, against something that looks like a real company and whose answers are known.

The modules: :mod:`.spec` (what to generate), :mod:`.fleet` (models, archetypes, departments and
agents), :mod:`.spikes` (the injected anomalies and their ground truth), :mod:`.traffic` (the event
stream), :mod:`.budgets` and :mod:`.load` (into a ledger). :mod:`.generator` keeps the names of the
former single module importable.

Everything derives from ``random.Random`` seeded from ``spec.seed``: same spec, same bytes.
"""

from __future__ import annotations

from fleetledger.demo.budgets import demo_budgets
from fleetledger.demo.fleet import SELF_HOSTED, Agent, Department, Fleet, Model, build_fleet
from fleetledger.demo.load import load_demo
from fleetledger.demo.spec import DemoSpec
from fleetledger.demo.spikes import ground_truth
from fleetledger.demo.traffic import generate

__all__ = [
    "DemoSpec",
    "Model",
    "SELF_HOSTED",
    "Department",
    "Agent",
    "Fleet",
    "build_fleet",
    "generate",
    "demo_budgets",
    "ground_truth",
    "load_demo",
]
