"""Fixtures and helpers shared by every test area, registered once by tests/conftest.py
(`pytest_plugins`); areas keep no conftest of their own.

- data.py             the session data dir (MiniLM demo index), demo catalog and queries, helpers
- registries.py       hash-encoder retrievers: the counting stand-in registry, the real registry
- app.py              TestClients of the app (no socket)
- server.py           live in-process servers (service.api.local.serve_in_background)
- service_process.py  `ospo serve` child processes for the system suites (kill, restart, flood)
- redis_servers.py    the shared Redis (skip or fail policy) and private redis-server processes
- reward_server.py    a loopback reward server (OpenRLHF protocol), a tiny in-process reward model
- tokenizers.py       the MiniLM and SmolLM2 (GGUF) tokenizers
- oracles.py          the Shapley oracle, the partition checker, real shopping queries
- browser.py          headless Chromium (Playwright) for the /inspect page
"""
