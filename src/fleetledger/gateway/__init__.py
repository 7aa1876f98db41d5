"""The gateway: an OpenAI- and Anthropic-compatible proxy that meters, caches, routes and enforces
budgets in line (see docs/gateway.md).

Modules: ``config`` (gateway.yaml), ``keys`` (virtual keys), ``policies`` (routing policies the
dashboard switches on), ``wire`` (provider request/response shapes), ``metering`` (usage from
bodies and streams), ``proxy`` (the ASGI app) and the steps of a request it runs: ``admission``
(key, body, limits, policies, route), ``cached`` (answers from the cache), ``reservations``
(budgets), ``relay`` (the upstream call, streamed or whole, and its metering); ``calls`` (what those
share), ``upstream`` (the keep-alive upstream client), ``replay`` (a cached answer as a stream),
``cache`` (the response cache), ``savings`` (what cache hits saved). The local upstream for tests
and benchmarks is :mod:`fleetledger.testing.simulator`.
"""
