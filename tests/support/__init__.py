"""Helpers shared by the tests and bench/ (never shipped in the package): a servable random bundle
(bundles.py) and a real ``bentoml serve`` child process (server.py)."""
