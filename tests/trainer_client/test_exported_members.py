"""The public surface: `trainer_client.__all__` is exactly the sorted public names."""

from __future__ import annotations

import inspect

import trainer_client


def test_all_is_the_sorted_public_names():
    public = sorted(
        name
        for name, value in vars(trainer_client).items()
        if not name.startswith("_") and not inspect.ismodule(value) and name != "annotations"
    )
    assert trainer_client.__all__ == public


def test_exported_members_say_where_they_live():
    for name in trainer_client.__all__:
        member = getattr(trainer_client, name)
        if inspect.isclass(member) or inspect.isfunction(member):
            assert member.__module__.startswith("trainer_client"), name


def test_exception_tree_matches_the_docstring():
    e = trainer_client
    assert issubclass(e.TransportError, e.OspoClientError)
    for leaf in (
        e.ConnectError,
        e.ConnectTimeout,
        e.ReadTimeout,
        e.WriteTimeout,
        e.PoolTimeout,
        e.NetworkError,
    ):
        assert issubclass(leaf, e.TransportError)
    assert issubclass(e.ClientRequestError, e.ServerError)
    assert issubclass(e.AuthenticationError, e.ClientRequestError)
    assert issubclass(e.ServiceUnavailable, e.ServerError)
    assert not issubclass(e.ServiceUnavailable, e.ClientRequestError)
    assert issubclass(e.ResponseFormatError, e.OspoClientError)
    doc = inspect.getmodule(e.OspoClientError).__doc__ or ""  # type: ignore[union-attr]
    for name in (
        "OspoClientError",
        "TransportError",
        "ServerError",
        "ClientRequestError",
        "ServiceUnavailable",
    ):
        assert name in doc


def test_client_module_never_imports_the_service():
    import ast
    from pathlib import Path

    package = Path(trainer_client.__file__).parent
    for path in package.rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module or ""]
            else:
                continue
            assert not any(n == "service" or n.startswith("service.") for n in names), path
