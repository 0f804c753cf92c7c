"""The public surface: what is exported, that it is documented, and that it is typed."""

from __future__ import annotations

import inspect
from pathlib import Path

import modelslab_fetch
from modelslab_fetch import AsyncModelsLab, ModelsLab


def test_every_exported_name_exists_and_is_documented() -> None:
    undocumented = []
    for name in modelslab_fetch.__all__:
        obj = getattr(modelslab_fetch, name)
        if inspect.isclass(obj) or inspect.isfunction(obj):
            if not inspect.getdoc(obj):
                undocumented.append(name)
            for member_name, member in vars(obj).items():
                if member_name.startswith("_"):
                    continue
                if isinstance(member, property | staticmethod | classmethod) or inspect.isfunction(
                    member
                ):
                    target = member.fget if isinstance(member, property) else member
                    if not inspect.getdoc(target):
                        undocumented.append(f"{name}.{member_name}")
    assert undocumented == []


def test_the_error_hierarchy_is_one_tree() -> None:
    errors = [
        getattr(modelslab_fetch, name) for name in modelslab_fetch.__all__ if name.endswith("Error")
    ]
    # ForeignFetchURLError joined the 20 of the wire taxonomy, then InvalidWebhookError.
    assert len(errors) == 22
    assert all(issubclass(error, modelslab_fetch.ModelsLabError) for error in errors)
    # Each class says when it is raised (the docs' error table is built on that).
    bases = {"ModelsLabError", "AccountError"}
    assert all("Raised" in (e.__doc__ or "") for e in errors if e.__name__ not in bases)


def test_the_error_names_of_the_wire_taxonomy_are_exported() -> None:
    from modelslab_fetch import (
        AccountError,
        APIStatusError,
        AuthenticationError,
        BadRequestError,
        GenerationFailedError,
        InsufficientCreditsError,
        PermissionDeniedError,
        RateLimitError,
        RequestNotFoundError,
    )

    for status_error in (BadRequestError, RequestNotFoundError, RateLimitError):
        assert issubclass(status_error, APIStatusError)
    for account_error in (InsufficientCreditsError, PermissionDeniedError):
        assert issubclass(account_error, APIStatusError)
        assert issubclass(account_error, AccountError)
    assert issubclass(AuthenticationError, AccountError)
    assert not issubclass(RequestNotFoundError, GenerationFailedError)
    assert not issubclass(PermissionDeniedError, AuthenticationError)


def test_sync_client_mirrors_the_async_surface() -> None:
    async_client = AsyncModelsLab(api_key="k")
    sync_client = ModelsLab(api_key="k")
    for path in ("images", "enterprise.super_resolution"):
        async_resource, sync_resource = async_client, sync_client
        for part in path.split("."):
            async_resource = getattr(async_resource, part)
            sync_resource = getattr(sync_resource, part)
        for method in ("fetch", "wait"):
            async_sig = inspect.signature(getattr(async_resource, method))
            sync_sig = inspect.signature(getattr(sync_resource, method))
            assert list(async_sig.parameters) == list(sync_sig.parameters)
            for name, param in async_sig.parameters.items():
                assert sync_sig.parameters[name].default == param.default
    assert list(inspect.signature(AsyncModelsLab).parameters) == list(
        inspect.signature(ModelsLab).parameters
    )
    sync_client.close()


def test_the_package_ships_its_type_marker() -> None:
    assert (Path(modelslab_fetch.__file__).parent / "py.typed").is_file()


def test_version_is_exposed() -> None:
    assert modelslab_fetch.__version__.count(".") >= 2


def test_python_dash_m_runs_the_command() -> None:
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-m", "modelslab_fetch", "--version"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert done.stdout.strip() == f"modelslab-fetch {modelslab_fetch.__version__}"


def test_every_error_class_is_documented_in_the_readme_and_docs() -> None:
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    readme = (root / "README.md").read_text(encoding="utf-8")
    errors_page = (root / "docs" / "errors.md").read_text(encoding="utf-8")
    for name in modelslab_fetch.__all__:
        if name.endswith("Error") and name != "ModelsLabError":
            assert f"| `{name}`" in readme, name
            assert f"| `{name}`" in errors_page, name


def test_the_testing_module_exports_are_documented_too() -> None:
    from modelslab_fetch import testing

    assert "SimulatorServer" in testing.__all__
    for name in testing.__all__:
        obj = getattr(testing, name)
        if inspect.isclass(obj) or inspect.isfunction(obj):
            assert inspect.getdoc(obj), name
            for member_name, member in vars(obj).items():
                if isinstance(member, property) and not member_name.startswith("_"):
                    assert inspect.getdoc(member.fget), f"{name}.{member_name}"


def test_help_shows_each_endpoint_as_a_resource_with_its_calls() -> None:
    import pydoc

    for client in (AsyncModelsLab, ModelsLab):
        text = pydoc.plain(pydoc.render_doc(client))
        # Rows read as documented attributes, never as a method that prints a repr.
        assert "FetchEndpoint(path_template=" not in text
        assert "Group(Async" not in text
        for name, path in (("images", "/v6/images/fetch"), ("video", "/v6/video/fetch/{id}")):
            start = text.index(f"\n |  {name}\n")
            entry = text[start : text.index("\n |  \n", start)]
            assert f"`POST {path}`" in entry
            for call in (".fetch(id)", ".wait(id", ".fetch_many(ids)", ".wait_many(ids)"):
                assert call in entry, (name, call)
        start = text.index("\n |  enterprise\n")
        entry = text[start : text.index("\n |  \n", start)]
        assert "enterprise servers" in entry
        assert "super_resolution" in entry and "faceswap" in entry


def test_endpoints_of_a_client_are_read_only() -> None:
    import pytest

    client = ModelsLab(api_key="k")
    try:
        with pytest.raises(AttributeError, match="read-only"):
            client.images = None
        with pytest.raises(AttributeError, match="read-only"):
            client.enterprise = None
    finally:
        client.close()
