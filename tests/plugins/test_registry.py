"""The plugin registry: entry-point discovery, lookup by name or label, version resolution."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from flowport.errors import PluginNotFound
from flowport.model.flow import ArtifactRef, PluginRef, StageKind
from flowport.model.versions import ArtifactVersion
from flowport.plugins.contract import (
    Destination,
    ErrorSink,
    Processor,
    StageConfig,
    StageContext,
    StageOutput,
)
from flowport.plugins.registry import PluginRegistry

ARTIFACT = "flowport-test-plugin"


def ref(plugin: str = "uppercase", version: str | None = None, **artifact: Any) -> PluginRef:
    return PluginRef(name=plugin, artifact=ArtifactRef(version=version, **artifact))


# -- discovery through entry points ------------------------------------------------------


def test_discovers_a_user_artifact_from_an_extra_path(plugin_sites: dict[str, Path]) -> None:
    registry = PluginRegistry.discover(paths=[str(plugin_sites["1.0.0"])])
    found = [p for p in registry.plugins if p.info.artifact.name == ARTIFACT]
    assert len(found) == 1
    info = found[0].info
    assert (info.name, info.label, info.kind) == ("uppercase", "Uppercase", StageKind.PROCESSOR)
    assert info.artifact.scope == "USER"
    assert info.artifact.version == ArtifactVersion.parse("1.0.0")
    assert list(info.config_model.model_fields) == ["fields", "version_field"]
    assert info.config_model.model_validate({"fields": ["a"]}).fields == ["a"]  # type: ignore[attr-defined]


def test_the_discovered_plugin_runs(plugin_sites: dict[str, Path]) -> None:
    registry = PluginRegistry.discover(paths=[str(plugin_sites["1.0.0"])])
    cls = registry.plugin_class(ref())
    stage = cls(cls.config_model(fields=["name"]), StageContext(stage_name="Upper_01"))  # type: ignore[call-arg]
    out = stage.process(pa.record_batch({"name": ["ada"], "n": [1]}))  # type: ignore[attr-defined]
    assert out.records.to_pydict() == {"name": ["ADA"], "n": [1]}


def test_nothing_is_found_without_the_extra_path() -> None:
    registry = PluginRegistry.discover()
    assert ARTIFACT not in {p.info.artifact.name for p in registry.plugins}


def test_two_versions_side_by_side(plugin_sites: dict[str, Path]) -> None:
    registry = PluginRegistry.discover(paths=[str(plugin_sites["1.0.0"]), str(plugin_sites["1.2.0"])])
    versions = sorted(str(a.version) for a in registry.artifacts() if a.name == ARTIFACT)
    assert versions == ["1.0.0", "1.2.0"]

    latest = registry.resolve(ref())
    assert latest.plugin is not None
    assert str(latest.plugin.artifact.version) == "1.2.0"

    pinned = registry.resolve(ref(version="[1.0.0,1.1.0)"))
    assert pinned.plugin is not None
    assert str(pinned.plugin.artifact.version) == "1.0.0"

    missing = registry.resolve(ref(version="[2.0,3.0)"))
    assert missing.plugin is None
    assert missing.code == "ARTIFACT_VERSION_NOT_FOUND"
    assert missing.message == (
        "No installed version of artifact 'flowport-test-plugin' matches [2.0,3.0) for plugin 'uppercase'; "
        "installed: 1.0.0, 1.2.0"
    )


def test_each_version_runs_its_own_code(plugin_sites: dict[str, Path]) -> None:
    # Both copies define the module 'flowport_test_plugin'; each must be imported from its own directory.
    registry = PluginRegistry.discover(paths=[str(plugin_sites["1.0.0"]), str(plugin_sites["1.2.0"])])
    for version in ("1.0.0", "1.2.0"):
        cls = registry.plugin_class(ref(version=version))
        module = sys.modules[cls.__module__]
        assert module.__version__ == version
        assert Path(module.__file__ or "").parent == plugin_sites[version]


def test_discovery_is_repeatable(plugin_sites: dict[str, Path]) -> None:
    paths = [str(plugin_sites["1.2.0"])]
    first = PluginRegistry.discover(paths=paths).plugin_class(ref())
    second = PluginRegistry.discover(paths=paths).plugin_class(ref())
    assert first is second  # the private module is imported once


def test_lookup_by_label(plugin_sites: dict[str, Path]) -> None:
    registry = PluginRegistry.discover(paths=[str(plugin_sites["1.0.0"])])
    assert registry.name_for("Uppercase") == "uppercase"
    assert registry.name_for("uppercase") == "uppercase"
    assert registry.name_for("UPPER case") == "uppercase"


def test_a_broken_plugin_is_reported_not_fatal(plugin_sites: dict[str, Path]) -> None:
    registry = PluginRegistry.discover(paths=[str(plugin_sites["9.9.9"]), str(plugin_sites["1.0.0"])])
    assert [str(a.version) for a in registry.artifacts() if a.name == ARTIFACT] == ["1.0.0"]
    errors = [e for e in registry.load_errors if e.startswith(f"{ARTIFACT} 9.9.9")]
    assert len(errors) == 1
    assert "entry point 'uppercase' failed to load" in errors[0]
    assert "broken on purpose" in errors[0]


def test_an_unusable_version_is_reported_not_fatal(plugin_sites: dict[str, Path]) -> None:
    registry = PluginRegistry.discover(paths=[str(plugin_sites["1.3.0+build5"]), str(plugin_sites["1.2.0"])])
    assert [str(a.version) for a in registry.artifacts() if a.name == ARTIFACT] == ["1.2.0"]
    assert any(
        e.startswith(f"{ARTIFACT} 1.3.0+build5") and "'1.3.0+build5' is not a version" in e
        for e in registry.load_errors
    )


def test_a_lookup_imports_only_the_version_it_resolves(plugin_sites: dict[str, Path]) -> None:
    # 9.9.9 raises when imported: it is imported only when a reference resolves to it.
    paths = [str(plugin_sites[v]) for v in ("9.9.9", "1.0.0", "1.2.0")]
    registry = PluginRegistry.discover(paths=paths)
    assert registry.resolve(ref(version="[1.0,2.0)")).plugin is not None
    cls = registry.plugin_class(ref(version="[1.0,2.0)"))
    assert sys.modules[cls.__module__].__version__ == "1.2.0"
    assert registry.load_errors == []
    # The highest version fails to import: the next one in range is used, and the failure reported.
    latest = registry.resolve(ref())
    assert latest.plugin is not None
    assert str(latest.plugin.artifact.version) == "1.2.0"
    assert len(registry.load_errors) == 1
    assert registry.load_errors[0].startswith(f"{ARTIFACT} 9.9.9: entry point 'uppercase' failed to load")


def test_discovery_lists_distributions_without_importing(plugin_sites: dict[str, Path]) -> None:
    registry = PluginRegistry.discover(paths=[str(plugin_sites["9.9.9"]), str(plugin_sites["1.2.0"])])
    mine = [d for d in registry.distributions() if d.artifact.name == ARTIFACT]
    assert [(str(d.artifact.version), d.location, d.on_sys_path) for d in mine] == [
        ("1.2.0", plugin_sites["1.2.0"], False),
        ("9.9.9", plugin_sites["9.9.9"], False),
    ]
    assert all(d.entry_points == ("uppercase",) for d in mine)
    assert registry.load_errors == []
    core = [d for d in registry.distributions() if d.artifact.name == "flowport-core"]
    assert len(core) == 1 and core[0].artifact.scope == "SYSTEM" and core[0].on_sys_path


@pytest.fixture
def clean_plugin_module() -> Iterator[None]:
    """Forget the plugin module a test imported from sys.path, so later tests cannot see it."""
    sys.modules.pop("flowport_test_plugin", None)
    yield
    sys.modules.pop("flowport_test_plugin", None)


@pytest.mark.usefixtures("clean_plugin_module")
def test_two_versions_on_sys_path_each_run_their_own_code(
    plugin_sites: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The case: 2.0.0 comes first on sys.path, so `import flowport_test_plugin` gives 2.0.0;
    # a flow pinned to [1.0.0,2.0.0) must still run 1.2.0's code.
    monkeypatch.syspath_prepend(str(plugin_sites["1.2.0"]))
    monkeypatch.syspath_prepend(str(plugin_sites["2.0.0"]))
    registry = PluginRegistry.discover()
    for spec, version in (("[1.0.0,2.0.0)", "1.2.0"), ("[2.0.0,3.0.0)", "2.0.0")):
        cls = registry.plugin_class(ref(version=spec))
        module = sys.modules[cls.__module__]
        assert module.__version__ == version
        assert Path(module.__file__ or "").parent == plugin_sites[version]
        stage = cls(cls.config_model(fields=[], version_field="v"), StageContext(stage_name="U"))  # type: ignore[call-arg]
        out = stage.process(pa.record_batch({"n": [1]}))  # type: ignore[attr-defined]
        assert out.records.to_pydict() == {"n": [1], "v": [version]}
    mine = {str(d.artifact.version): d for d in registry.distributions() if d.artifact.name == ARTIFACT}
    assert set(mine) == {"1.2.0", "2.0.0"} and all(d.on_sys_path for d in mine.values())


def test_a_version_in_an_extra_path_wins_over_the_same_version_on_sys_path(
    plugin_sites: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.syspath_prepend(str(plugin_sites["1.0.0"]))
    registry = PluginRegistry.discover(paths=[str(plugin_sites["1.0.0-other"])])
    cls = registry.plugin_class(ref(version="1.0.0"))
    module = sys.modules[cls.__module__]
    assert module.FLAVOUR == "other"
    assert "flowport_test_plugin" not in sys.modules  # the sys.path copy was not imported
    (dist,) = [d for d in registry.distributions() if d.artifact.name == ARTIFACT]
    assert (dist.location, dist.on_sys_path, dist.shadowed) == (
        plugin_sites["1.0.0-other"],
        False,
        (plugin_sites["1.0.0"],),
    )


def test_first_use_from_several_threads_imports_the_module_once(slow_import_site: Path) -> None:
    # The module sleeps while it is imported: without the import lock, a second thread would
    # import it again (another class object) or find it half-initialised (no Uppercase yet).
    registries = [PluginRegistry.discover(paths=[str(slow_import_site)]) for _ in range(3)]
    registries.append(registries[0])
    with ThreadPoolExecutor(max_workers=len(registries)) as pool:
        classes = list(pool.map(lambda r: r.plugin_class(ref(version="3.0.0")), registries))
    assert all(cls is classes[0] for cls in classes)
    assert all(r.load_errors == [] for r in registries)


# -- registry behaviour with classes added directly ------------------------------------------


class _Config(StageConfig):
    pass


class _Upper(Processor[_Config]):
    name = "upper"
    label = "Upper Case"
    config_model = _Config

    def process(self, batch: pa.RecordBatch) -> StageOutput:
        return StageOutput(records=batch)


class _Trash(Destination[_Config]):
    name = "trash"
    label = "Trash"
    config_model = _Config

    def write(self, batch: pa.RecordBatch) -> StageOutput | None:
        return None

    def commit(self) -> None:
        pass

    def abort(self) -> None:
        pass


class _WriteToFile(ErrorSink[_Config]):
    name = "write_to_file"
    label = "Write to File"
    config_model = _Config

    def write(self, errors: pa.Table) -> None:
        pass


@pytest.fixture
def registry() -> PluginRegistry:
    reg = PluginRegistry()
    for version in ("1.0.0", "1.1.0-SNAPSHOT", "1.1.0", "2.0.0"):
        reg.add(_Upper, artifact="acme-stages", version=version)
    reg.add(_Upper, artifact="flowport-core", version="0.9.0", scope="SYSTEM")
    reg.add(_Trash, artifact="flowport-core", version="1.0.0", scope="SYSTEM")
    reg.add(_WriteToFile, artifact="flowport-core", version="1.0.0", scope="SYSTEM")
    return reg


@pytest.mark.parametrize(
    ("version", "expected"),
    [
        (None, "2.0.0"),
        ("[1.0,2.0)", "1.1.0"),
        ("[1.0,1.1.0)", "1.1.0-SNAPSHOT"),  # the seed: SNAPSHOT is below its release
        ("1.0", "1.0.0"),
        ("(1.0.0,1.1.0]", "1.1.0"),
    ],
)
def test_highest_version_in_range(registry: PluginRegistry, version: str | None, expected: str) -> None:
    found = registry.resolve(ref("upper", version, name="acme-stages"))
    assert found.plugin is not None
    assert str(found.plugin.artifact.version) == expected


def test_scope_selects_the_artifact(registry: PluginRegistry) -> None:
    system = registry.resolve(PluginRef(name="upper", artifact=ArtifactRef(scope="SYSTEM")))
    assert system.plugin is not None
    assert (system.plugin.artifact.name, str(system.plugin.artifact.version)) == ("flowport-core", "0.9.0")


def test_resolution_failures_have_codes_and_reasons(registry: PluginRegistry) -> None:
    unknown = registry.resolve(PluginRef(name="nope"))
    assert (unknown.code, unknown.message) == (
        "PLUGIN_NOT_FOUND",
        "No installed artifact provides the stage plugin 'nope'",
    )
    other = registry.resolve(ref("upper", name="other-stages"))
    assert other.code == "ARTIFACT_NOT_FOUND"
    assert "provided by: acme-stages, flowport-core" in other.message
    bad = registry.resolve(ref("upper", "[2.0,1.0]"))
    assert bad.code == "BAD_VERSION"
    assert "lower bound 2.0 is above upper bound 1.0" in bad.message
    none = registry.resolve(ref("upper", "[3.0,4.0)", name="acme-stages"))
    assert none.code == "ARTIFACT_VERSION_NOT_FOUND"
    assert none.message.endswith("installed: 1.0.0, 1.1.0-SNAPSHOT, 1.1.0, 2.0.0")


def test_artifact_names_match_loosely(registry: PluginRegistry) -> None:
    found = registry.resolve(ref("upper", name="ACME_stages"))
    assert found.plugin is not None
    assert found.plugin.artifact.name == "acme-stages"


def test_plugin_class_raises_with_the_reason(registry: PluginRegistry) -> None:
    assert registry.plugin_class(PluginRef(name="trash")) is _Trash
    with pytest.raises(PluginNotFound, match="'nope'"):
        registry.plugin_class(PluginRef(name="nope"))


def test_name_for_labels_and_unknown_names(registry: PluginRegistry) -> None:
    assert registry.name_for("Write to File") == "write_to_file"
    assert registry.name_for("write_to_file") == "write_to_file"
    assert registry.name_for("Upper Case") == "upper"
    with pytest.raises(
        PluginNotFound, match=r"No stage plugin is called 'Sink'\. Installed: .*Trash \(trash\)"
    ):
        registry.name_for("Sink")


def test_latest_and_artifacts(registry: PluginRegistry) -> None:
    latest = {(p.info.name, p.info.artifact.name): str(p.info.artifact.version) for p in registry.latest()}
    assert latest == {
        ("upper", "acme-stages"): "2.0.0",
        ("upper", "flowport-core"): "0.9.0",
        ("trash", "flowport-core"): "1.0.0",
        ("write_to_file", "flowport-core"): "1.0.0",
    }
    assert [(a.name, str(a.version)) for a in registry.artifacts()][:2] == [
        ("acme-stages", "1.0.0"),
        ("acme-stages", "1.1.0-SNAPSHOT"),
    ]


def test_adding_the_same_version_again_replaces_it(registry: PluginRegistry) -> None:
    before = len(registry.plugins)
    registry.add(_Upper, artifact="acme-stages", version="2.0.0")
    assert len(registry.plugins) == before


def test_add_rejects_a_class_that_is_not_a_plugin() -> None:
    with pytest.raises(TypeError, match="has no 'name'"):
        PluginRegistry().add(object, artifact="x", version="1.0")  # type: ignore[arg-type]
