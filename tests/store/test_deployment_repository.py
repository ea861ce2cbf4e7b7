"""Contract of the deployment repository: deployments, releases, import rules.

The same tests run on SQLite, PostgreSQL and MariaDB (see conftest.py).
"""

from __future__ import annotations

import os
import uuid

import pytest
from sqlalchemy import inspect
from sqlalchemy.orm import Session

from flowport.errors import Conflict, NotFound, ValidationFailed
from flowport.store import deployments as repo
from flowport.store import flows, jobs, parameter_sets, projects
from flowport.store.database import get_engine, transaction
from flowport.store.schema import downgrade, head_revision, upgrade
from flowport.store.tables import Deployment, FlowRecord, Release


def _deployment(session: Session, name: str) -> Deployment:
    project = projects.create(session, name=f"deployment-project-{uuid.uuid4().hex[:8]}")
    return repo.create(session, name=name, project_id=project.id, creator_id=7)


def _release(session: Session, deployment_id: int, package: bytes = b"PK zip") -> Release:
    return repo.create_release(
        session,
        deployment_id=deployment_id,
        package=package,
        package_uuid=uuid.uuid4(),
        package_sha256="0" * 64,
        notes="first",
        creator_id=7,
    )


def _flow(session: Session, project_id: int, name: str) -> FlowRecord:
    flow_uuid = uuid.uuid4()
    document = {"format": "flowport.flow/1", "uuid": str(flow_uuid), "name": name}
    return flows.create(session, project_id=project_id, uuid=flow_uuid, name=name, document=document)


def test_head_has_the_deployment_tables_and_downgrade_to_0002_drops_only_them(empty_store: str) -> None:
    assert upgrade(empty_store) == head_revision()
    tables = set(inspect(get_engine(empty_store)).get_table_names())
    assert {"deployments", "releases", "import_rules"} <= tables
    downgrade(empty_store, "0002")
    tables = set(inspect(get_engine(empty_store)).get_table_names())
    assert not {"deployments", "releases", "import_rules"} & tables
    assert {"flows", "projects"} <= tables
    assert upgrade(empty_store) == head_revision()


def test_deployments_create_read_rename_and_names_are_unique(store: str) -> None:
    with transaction(store) as s:
        created = _deployment(s, "Production Orders")
        assert (created.creator_id, created.updater_id) == (7, 7)
        with pytest.raises(Conflict, match="named 'Production Orders' already exists"):
            _deployment(s, "Production Orders")
    with transaction(store) as s:
        assert repo.get_by_name(s, "Production Orders").id == created.id
        other = _deployment(s, "Other")
        with pytest.raises(Conflict):
            repo.update(s, other, {"name": "Production Orders"})
    with transaction(store) as s:
        renamed = repo.update(s, repo.get_by_id(s, created.id), {"name": "Prod Orders", "updater_id": 9})
        assert renamed.updated_at >= renamed.created_at and renamed.updater_id == 9
        with pytest.raises(ValidationFailed, match="project_id"):
            repo.update(s, renamed, {"project_id": 1})
        assert [d.name for d in repo.list_(s)] == ["Prod Orders", "Other"]
        assert repo.count(s) == 2 and repo.count(s, name="Other") == 1
        assert [d.name for d in repo.list_(s, limit=1, offset=1)] == ["Other"]
        with pytest.raises(NotFound, match="No deployment with id 999"):
            repo.get_by_id(s, 999)
        with pytest.raises(NotFound):
            repo.lock(s, 999)
        assert repo.lock(s, created.id).id == created.id


def test_at_most_one_release_is_active_and_the_package_round_trips(store: str) -> None:
    # Larger than MySQL's 64 KiB BLOB: the column must be a LONGBLOB there.
    big = os.urandom(200_000)
    with transaction(store) as s:
        deployment_id = _deployment(s, "D").id
        first = _release(s, deployment_id, big)
        second = _release(s, deployment_id)
        assert not first.active and repo.active_release(s, deployment_id) is None
        repo.activate(s, first, updater_id=3)
        repo.activate(s, second, updater_id=4)
    with transaction(store) as s:
        assert repo.active_release(s, deployment_id).id == second.id  # type: ignore[union-attr]
        assert [r.active for r in repo.list_releases(s, deployment_id=deployment_id)] == [False, True]
        old = repo.get_release(s, first.id)
        assert old.package == big and old.updater_id == 4
        repo.activate(s, old, updater_id=5)
    with transaction(store) as s:
        assert [r.active for r in repo.list_releases(s, deployment_id=deployment_id)] == [True, False]
        repo.deactivate(s, repo.get_release(s, first.id))
        assert repo.active_release(s, deployment_id) is None
        assert repo.count_releases(s) == 2 and repo.count_releases(s, deployment_id=deployment_id) == 2
        with pytest.raises(NotFound, match="No release with id 999"):
            repo.get_release(s, 999)


def test_deleting_a_release_deletes_its_flows_only(store: str) -> None:
    with transaction(store) as s:
        deployment = _deployment(s, "D")
        release = _release(s, deployment.id)
        kept = _release(s, deployment.id)
        mine = _flow(s, deployment.project_id, "Mine (release 1)")
        theirs = _flow(s, deployment.project_id, "Theirs (release 2)")
        elsewhere = _flow(s, projects.ensure_default(s).id, "Elsewhere")
        release.flows = [{"id": mine.id}, {"id": elsewhere.id}]
        kept.flows = [{"id": theirs.id}]
        release.primary_flow_id = mine.id
        s.flush()
    with transaction(store) as s:
        repo.delete_release(s, repo.get_release(s, release.id))
    with transaction(store) as s:
        assert [r.id for r in repo.list_releases(s)] == [kept.id]
        assert {f.name for f in flows.list_(s)} == {"Theirs (release 2)", "Elsewhere"}


def test_import_rules_are_replaced_as_a_whole_in_order_per_kind(store: str) -> None:
    with transaction(store) as s:
        deployment_id = _deployment(s, "D").id
        rule_a = {"type": "fileLocation", "on": "/dev/", "with": "/prod/"}
        rule_b = {"type": "tableName", "on": "Dev-Orders", "with": "Prod-Orders"}
        assert repo.replace_rules(s, deployment_id, "value", [rule_a, rule_b]) == []
        obj = {"tableName": "connections", "onCondition": {"uuid": "u"}, "withCondition": {"id": 1}}
        assert repo.replace_rules(s, deployment_id, "object", [obj]) == []
    with transaction(store) as s:
        assert repo.rules(s, deployment_id, "value") == [rule_a, rule_b]
        assert repo.replace_rules(s, deployment_id, "value", [rule_b, rule_a]) == [rule_a, rule_b]
        assert repo.rules(s, deployment_id, "value") == [rule_b, rule_a]
        assert repo.rules(s, deployment_id, "object") == [obj]
        assert repo.replace_rules(s, deployment_id, "object", []) == [obj]
        assert repo.rules(s, deployment_id, "object") == []
        with pytest.raises(ValidationFailed, match="Unknown import rule kind"):
            repo.rules(s, deployment_id, "other")


def test_deleting_a_deployment_deletes_its_project_and_keeps_job_history(store: str) -> None:
    with transaction(store) as s:
        deployment = _deployment(s, "D")
        keep = _deployment(s, "Keep")
        project_id = deployment.project_id
        release = _release(s, deployment.id)
        flow = _flow(s, project_id, "F (release 1)")
        release.flows, release.primary_flow_id = [{"id": flow.id}], flow.id
        repo.activate(s, release)
        repo.replace_rules(s, deployment.id, "value", [{"type": "parameter", "on": "a", "with": "b"}])
        parameter_sets.create(s, project_id=project_id, name="orders", parameters={"a": "1"})
        group = jobs.create_group(s, flow_id=flow.id, deployment_id=deployment.id)
        _release(s, keep.id)
    with transaction(store) as s:
        repo.delete(s, repo.get_by_id(s, deployment.id))
    with transaction(store) as s:
        assert [d.name for d in repo.list_(s)] == ["Keep"]
        assert repo.count_releases(s) == 1 and repo.rules(s, deployment.id, "value") == []
        with pytest.raises(NotFound):
            projects.get_by_id(s, project_id)
        assert flows.count(s, project_id=project_id) == 0
        history = jobs.get_group(s, group.id)
        # The history stays, like a deleted flow's: the foreign key sets the deployment to NULL.
        assert (history.flow_id, history.deployment_id) == (None, None)
