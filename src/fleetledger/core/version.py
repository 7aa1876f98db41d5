"""The installed distribution's version, for ``--version``, the API's ``/version`` and user agents.

Read once from the package metadata (:mod:`importlib.metadata`), so it is the version pip
installed, with no second copy to keep in step. Lower layers and adapters import
:data:`VERSION` from here rather than ``fleetledger.__version__`` (the package root re-exports
the public names and is above every layer).
"""

from __future__ import annotations

from importlib.metadata import version

__all__ = ["VERSION"]

VERSION: str = version("fleetledger")
