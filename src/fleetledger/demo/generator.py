"""The demo's names under their former module path (``fleetledger.demo.generator``).

The fleet is built in :mod:`.fleet`, the spikes and ground truth in :mod:`.spikes`, the events in
:mod:`.traffic`, budgets in :mod:`.budgets`, the loading in :mod:`.load`; see the package docstring.
"""

from __future__ import annotations

from fleetledger.demo.budgets import demo_budgets
from fleetledger.demo.fleet import SELF_HOSTED as SELF_HOSTED
from fleetledger.demo.fleet import Agent, Department, Fleet, Model, build_fleet
from fleetledger.demo.load import load_demo
from fleetledger.demo.spec import DemoSpec
from fleetledger.demo.spikes import ground_truth
from fleetledger.demo.traffic import generate

__all__ = [
    "DemoSpec",
    "Model",
    "Department",
    "Agent",
    "Fleet",
    "build_fleet",
    "generate",
    "demo_budgets",
    "ground_truth",
    "load_demo",
]
