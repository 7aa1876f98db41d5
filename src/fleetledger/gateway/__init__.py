"""The gateway: an OpenAI- and Anthropic-compatible proxy that meters, caches, routes and enforces
budgets in line (see docs/gateway.md).

Modules: ``config`` (gateway.yaml), ``keys`` (virtual keys), ``policies`` (routing policies the
dashboard switches on), ``wire`` (provider request/response shapes), ``metering`` (usage from
bodies and streams), ``proxy`` (the ASGI app), ``cache`` (response cache), ``simulator`` (a local
upstream for tests and benchmarks).
"""
