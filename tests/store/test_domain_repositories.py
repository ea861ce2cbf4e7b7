"""Contract of the domain repositories (users, tokens, projects, flows, parameter sets, jobs).

The same tests run on SQLite, PostgreSQL and MariaDB (see conftest.py).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import MetaData, Table, inspect, text

from flowport.errors import Conflict, NotFound, ValidationFailed
from flowport.store import connections as connections_repo
from flowport.store import deployments as deployments_repo
from flowport.store import flows, jobs, parameter_sets, projects, tokens, users
from flowport.store.database import get_engine, transaction
from flowport.store.schema import downgrade, head_revision, upgrade
from flowport.store.tables import Base, utcnow

DOMAIN_TABLES = {"users", "api_tokens", "projects", "flows", "parameter_sets", "job_groups", "jobs"}


def _flow(
    session, project_id: int, name: str, flow_type: str = "batch", **values: object
) -> flows.FlowRecord:
    flow_uuid = values.pop("uuid", None) or uuid.uuid4()
    document = {"format": "flowport.flow/1", "uuid": str(flow_uuid), "name": name, "type": flow_type}
    return flows.create(
        session,
        project_id=project_id,
        uuid=flow_uuid,  # type: ignore[arg-type]
        name=name,
        type=flow_type,
        document=document,
        **values,  # type: ignore[arg-type]
    )


# -- schema --------------------------------------------------------------------------


def test_head_has_every_domain_table_and_the_default_project(store: str) -> None:
    assert set(inspect(get_engine(store)).get_table_names()) >= DOMAIN_TABLES
    with transaction(store) as s:
        default = projects.get_by_name(s, "default")
        assert default.created_at.tzinfo is UTC
        assert projects.ensure_default(s).id == default.id
        assert projects.count(s) == 1


def test_upgrade_from_0001_keeps_its_data_and_downgrade_to_0001_keeps_it_too(empty_store: str) -> None:
    assert upgrade(empty_store) == head_revision()
    downgrade(empty_store, "0001")
    # Written as a 0001 store has it (today's model has columns 0001 did not).
    engine = get_engine(empty_store)
    kept_uuid = uuid.uuid4()
    with engine.begin() as c:
        existing = {column["name"] for column in inspect(c).get_columns("connections")}
        model = Base.metadata.tables["connections"]
        table = Table(
            "connections", MetaData(), *(col._copy() for col in model.columns if col.name in existing)
        )
        now = datetime.now(UTC)
        c.execute(
            table.insert().values(
                uuid=kept_uuid,
                name="From 0001",
                description="",
                vendor="postgresql",
                params={},
                ssl=False,
                credential_type="basic",
                secret=b"token",
                is_global=False,
                created_at=now,
                updated_at=now,
            )
        )
    assert upgrade(empty_store) == head_revision()
    with transaction(empty_store) as s:
        row = connections_repo.get_by_name(s, "From 0001")
        assert (row.uuid, row.secret, row.credentials_shared) == (kept_uuid, b"token", True)
        kept = row
        projects.get_by_name(s, "default")
        users.create(s, name="ann", password_hash="$argon2id$x", role="admin")
    downgrade(empty_store, "0001")
    assert not DOMAIN_TABLES & set(inspect(get_engine(empty_store)).get_table_names())
    with get_engine(empty_store).begin() as c:
        ids = c.execute(text("SELECT id FROM connections WHERE name = 'From 0001'")).scalars().all()
    assert ids == [kept.id]


def test_check_constraints_refuse_unknown_roles_types_and_statuses(store: str) -> None:
    statements = [
        "INSERT INTO users (name, password_hash, role, created_at, updated_at) "
        "VALUES ('x', 'h', 'root', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)",
        "INSERT INTO job_groups (status, parameters, session_id, created_at, updated_at) "
        "VALUES ('Running', '{}', '00000000000000000000000000000001', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)",
    ]
    for statement in statements:
        with pytest.raises(Exception, match=r"(?i)check|constraint"), get_engine(store).begin() as c:
            c.execute(text(statement))


# -- users and tokens ------------------------------------------------------------------


def test_users_create_read_update_and_names_are_unique(store: str) -> None:
    with transaction(store) as s:
        ann = users.create(s, name="ann", password_hash="$argon2id$hash", role="admin")
        users.create(s, name="bob", password_hash="$argon2id$hash2", role="viewer")
    with transaction(store) as s:
        assert users.get_by_id(s, ann.id).name == "ann"
        assert users.get_by_name(s, "bob").role == "viewer"
        assert [u.name for u in users.list_(s)] == ["ann", "bob"]
        assert [u.name for u in users.list_(s, limit=1, offset=1)] == ["bob"]
        assert users.count(s) == 2
        assert "hash" not in repr(users.get_by_id(s, ann.id))
    with pytest.raises(Conflict, match="'ann' already exists"), transaction(store) as s:
        users.create(s, name="ann", password_hash="h", role="viewer")
    with pytest.raises(Conflict), transaction(store) as s:
        users.update(s, users.get_by_name(s, "bob"), {"name": "ann"})
    with pytest.raises(ValidationFailed, match="id"), transaction(store) as s:
        users.update(s, ann.id, {"id": 9})
    with transaction(store) as s:
        changed = users.update(s, ann.id, {"role": "editor"})
        assert changed.role == "editor" and changed.updated_at >= changed.created_at
    with pytest.raises(NotFound), transaction(store) as s:
        users.get_by_name(s, "nobody")


def test_tokens_are_found_by_hash_listed_per_user_and_revoked_once(store: str) -> None:
    with transaction(store) as s:
        ann = users.create(s, name="ann", password_hash="h", role="admin")
        bob = users.create(s, name="bob", password_hash="h", role="viewer")
        first = tokens.create(s, user_id=ann.id, name="ci", token_hash="a" * 64, prefix="fpt_aaaaaaaa")
        tokens.create(s, user_id=ann.id, name="laptop", token_hash="b" * 64, prefix="fpt_bbbbbbbb")
        tokens.create(s, user_id=bob.id, name="ci", token_hash="c" * 64, prefix="fpt_cccccccc")
    with transaction(store) as s:
        assert tokens.get_by_hash(s, "a" * 64).id == first.id  # type: ignore[union-attr]
        assert tokens.get_by_hash(s, "d" * 64) is None
        assert [t.name for t in tokens.list_(s, user_id=ann.id)] == ["ci", "laptop"]
        assert tokens.count(s) == 3 and tokens.count(s, user_id=bob.id) == 1
        revoked = tokens.revoke(s, tokens.get_by_id(s, first.id))
        when = revoked.revoked_at
        assert when is not None
    with transaction(store) as s:
        again = tokens.revoke(s, tokens.get_by_id(s, first.id), utcnow() + timedelta(days=1))
        assert again.revoked_at == when
        assert tokens.count(s, user_id=ann.id, include_revoked=False) == 1
        tokens.touch(s, again, when)
        assert tokens.get_by_id(s, first.id).last_used_at == when
    with pytest.raises(Conflict), transaction(store) as s:
        tokens.create(s, user_id=bob.id, name="dup", token_hash="c" * 64, prefix="fpt_cccccccc")
    # Deleting a user deletes their tokens (ON DELETE CASCADE).
    with transaction(store) as s:
        users.delete(s, bob.id)
    with transaction(store) as s:
        assert tokens.count(s) == 2 and tokens.get_by_hash(s, "c" * 64) is None


# -- projects ----------------------------------------------------------------------------


def test_projects_find_by_id_name_or_default(store: str) -> None:
    with transaction(store) as s:
        sales = projects.create(s, name="sales", description="Sales flows", creator_id=3)
        numeric = projects.create(s, name="2024")
    with transaction(store) as s:
        assert projects.find(s, sales.id).name == "sales"
        assert projects.find(s, "sales").id == sales.id
        assert projects.find(s, str(sales.id)).id == sales.id
        assert projects.find(s, None).name == "default"
        assert projects.find(s, "2024").id == numeric.id  # a name that looks like an id
        assert [p.name for p in projects.list_(s)] == ["default", "sales", "2024"]
        assert projects.count(s, name="sales") == 1
        assert (sales.creator_id, sales.updater_id) == (3, 3)
    with pytest.raises(Conflict, match="'sales' already exists"), transaction(store) as s:
        projects.create(s, name="sales")
    with pytest.raises(NotFound), transaction(store) as s:
        projects.find(s, "nothing")


# -- flows ---------------------------------------------------------------------------------


def test_flow_names_and_uuids_are_unique_within_a_project_only(store: str) -> None:
    shared_uuid = uuid.uuid4()
    with transaction(store) as s:
        default = projects.ensure_default(s)
        other = projects.create(s, name="other")
        created = _flow(s, default.id, "Orders", uuid=shared_uuid, creator_id=2)
        _flow(s, other.id, "Orders", uuid=shared_uuid)
    with transaction(store) as s:
        row = flows.get_by_id(s, created.id)
        assert row.uuid == shared_uuid and row.document["name"] == "Orders"
        assert flows.get_by_name(s, default.id, "Orders").id == created.id
        assert flows.get_by_uuid(s, default.id, shared_uuid).id == created.id
        assert (row.creator_id, row.updater_id) == (2, 2)
    with pytest.raises(Conflict, match="named 'Orders' already exists"), transaction(store) as s:
        _flow(s, projects.ensure_default(s).id, "Orders")
    with pytest.raises(Conflict, match=f"uuid {shared_uuid}"), transaction(store) as s:
        _flow(s, projects.ensure_default(s).id, "Other name", uuid=shared_uuid)


def test_flow_lists_filter_by_project_name_and_type_and_count_before_paging(store: str) -> None:
    with transaction(store) as s:
        default = projects.ensure_default(s).id
        other = projects.create(s, name="other").id
        for name in ("Wrangle Orders", "orders 100%", "Customers", "orders_2"):
            _flow(s, default, name)
        _flow(s, default, "Live Orders", "streaming")
        _flow(s, other, "Orders elsewhere")
    with transaction(store) as s:
        assert flows.count(s) == 6
        assert flows.count(s, project_id=default) == 5
        assert [r.name for r in flows.list_(s, name="Customers")] == ["Customers"]
        contains = [r.name for r in flows.list_(s, project_id=default, name_contains="ORDERS")]
        assert contains == ["Wrangle Orders", "orders 100%", "orders_2", "Live Orders"]
        # % and _ are literal characters, not LIKE wildcards.
        assert [r.name for r in flows.list_(s, name_contains="100%")] == ["orders 100%"]
        assert [r.name for r in flows.list_(s, name_contains="s_2")] == ["orders_2"]
        assert [r.name for r in flows.list_(s, flow_type="streaming")] == ["Live Orders"]
        assert flows.count(s, flow_type="batch", project_id=default) == 4
        page = flows.list_(s, project_id=default, limit=2, offset=1)
        assert [r.name for r in page] == ["orders 100%", "Customers"]
        assert flows.count(s, project_id=default, name_contains="orders") == 4
    with pytest.raises(ValidationFailed, match="limit"), transaction(store) as s:
        flows.list_(s, limit=0)
    with pytest.raises(ValidationFailed, match="offset"), transaction(store) as s:
        flows.list_(s, offset=-1)


def test_flow_update_checks_uniqueness_and_delete_keeps_job_history(store: str) -> None:
    with transaction(store) as s:
        project = projects.ensure_default(s).id
        first = _flow(s, project, "First")
        second = _flow(s, project, "Second")
        group = jobs.create_group(s, flow_id=second.id)
        job = jobs.create_job(s, job_group_id=group.id, flow_id=second.id)
    with pytest.raises(Conflict), transaction(store) as s:
        flows.update(s, second.id, {"name": "First"})
    with pytest.raises(ValidationFailed, match="project_id"), transaction(store) as s:
        flows.update(s, second.id, {"project_id": 5})
    with transaction(store) as s:
        renamed = flows.update(s, second.id, {"name": "Second v2", "document": {"name": "Second v2"}})
        assert renamed.name == "Second v2" and renamed.document == {"name": "Second v2"}
        flows.update(s, first.id, {"name": "First"})  # its own name is no clash
        flows.delete(s, second.id)
    with transaction(store) as s:
        with pytest.raises(NotFound):
            flows.get_by_id(s, second.id)
        assert jobs.get_group(s, group.id).flow_id is None
        assert jobs.get_job(s, job.id).flow_id is None


# -- parameter sets --------------------------------------------------------------------------


def test_parameter_sets_are_unique_per_project_and_resolve_by_name(store: str) -> None:
    with transaction(store) as s:
        project = projects.ensure_default(s).id
        other = projects.create(s, name="other").id
        orders = parameter_sets.create(
            s, project_id=project, name="orders", parameters={"min_total": "100"}, description="d"
        )
        parameter_sets.create(s, project_id=other, name="orders", parameters={"min_total": "5"})
        parameter_sets.create(s, project_id=project, name="paths", parameters={"out": "/tmp/out"})
    with transaction(store) as s:
        assert parameter_sets.get_by_id(s, orders.id).parameters == {"min_total": "100"}
        assert parameter_sets.get_by_name(s, project, "orders").id == orders.id
        assert parameter_sets.values_by_name(s, project, ["orders", "missing"]) == {
            "orders": {"min_total": "100"}
        }
        assert parameter_sets.values_by_name(s, other, ["orders"]) == {"orders": {"min_total": "5"}}
        assert parameter_sets.values_by_name(s, project, []) == {}
        assert parameter_sets.count(s) == 3 and parameter_sets.count(s, project_id=project) == 2
        assert [p.name for p in parameter_sets.list_(s, project_id=project, name="paths")] == ["paths"]
    with pytest.raises(Conflict), transaction(store) as s:
        parameter_sets.create(s, project_id=project, name="orders", parameters={})
    with pytest.raises(Conflict), transaction(store) as s:
        parameter_sets.update(s, orders.id, {"name": "paths"})
    with transaction(store) as s:
        parameter_sets.update(s, orders.id, {"parameters": {"min_total": "7"}})
        parameter_sets.delete(s, orders.id)
    with pytest.raises(NotFound), transaction(store) as s:
        parameter_sets.get_by_id(s, orders.id)


# -- job groups and jobs -----------------------------------------------------------------------


def test_job_status_moves_only_from_the_expected_statuses(store: str) -> None:
    with transaction(store) as s:
        flow = _flow(s, projects.ensure_default(s).id, "Run me")
        group = jobs.create_group(s, flow_id=flow.id, parameters={"min_total": "5"}, creator_id=1)
        job = jobs.create_job(s, job_group_id=group.id, flow_id=flow.id)
        assert group.status == job.status == "Created"
        assert isinstance(group.session_id, uuid.UUID)
    with transaction(store) as s:
        assert jobs.transition(s, group.id, from_statuses={"Created"}, to_status="Pending")
        assert not jobs.transition(s, group.id, from_statuses={"Created"}, to_status="Canceled")
        now = utcnow()
        assert jobs.transition(
            s,
            group.id,
            from_statuses={"Pending"},
            to_status="InProgress",
            group_values={"started_at": now},
            job_values={"started_at": now},
        )
    with transaction(store) as s:
        row = jobs.get_group(s, group.id)
        assert row.status == "InProgress" and row.started_at == now
        assert jobs.get_job(s, job.id).status == "InProgress"
        assert jobs.get_job(s, job.id).started_at == now
        jobs.request_cancel(s, row)
        first_request = row.cancel_requested_at
        jobs.request_cancel(s, row, now + timedelta(seconds=5))
        assert row.cancel_requested_at == first_request is not None
        metrics = [{"stage": "B", "inputRecords": 3}, {"stage": "A", "inputRecords": 1}]
        jobs.update_job(s, job.id, {"metrics": metrics, "log": "line"})
        with pytest.raises(ValidationFailed, match="status"):
            jobs.update_job(s, job.id, {"status": "Canceled"})  # only transition() moves a status
        assert jobs.transition(
            s, group.id, from_statuses={"InProgress"}, to_status="Canceled", group_values={"result": {"x": 1}}
        )
        assert not jobs.transition(s, 999_999, from_statuses={"Pending"}, to_status="Failed")
    with transaction(store) as s:
        row = jobs.get_group(s, group.id)
        assert (row.status, row.result, row.parameters) == ("Canceled", {"x": 1}, {"min_total": "5"})
        done = jobs.get_job(s, job.id)
        assert (done.status, done.metrics, done.log) == ("Canceled", metrics, "line")
    with pytest.raises(ValidationFailed, match="Unknown job status"), transaction(store) as s:
        jobs.transition(s, group.id, from_statuses={"Canceled"}, to_status="Done")
    with (
        pytest.raises(ValidationFailed, match="cannot move from Canceled to InProgress"),
        transaction(store) as s,
    ):
        jobs.transition(s, group.id, from_statuses={"Canceled"}, to_status="InProgress")
    with transaction(store) as s:
        # Every move is in the outbox, in order, with its time stamped on the group.
        moves = [(e.from_status, e.to_status) for e in jobs.events_of(s, group.id)]
        assert moves == [("Created", "Pending"), ("Pending", "InProgress"), ("InProgress", "Canceled")]
        assert jobs.get_group(s, group.id).finished_at is not None
    with pytest.raises(ValidationFailed, match="log_text"), transaction(store) as s:
        jobs.update_job(s, job.id, {"log_text": "x"})


def test_job_groups_list_newest_first_with_filters(store: str) -> None:
    with transaction(store) as s:
        project = projects.ensure_default(s).id
        a, b = _flow(s, project, "A"), _flow(s, project, "B")
        ids = [jobs.create_group(s, flow_id=flow.id).id for flow in (a, b, a)]
        deployment = deployments_repo.create(s, name="D7", project_id=projects.create(s, name="d7").id)
        jobs.create_group(s, flow_id=None, deployment_id=deployment.id)
        for group_id in ids:
            jobs.create_job(s, job_group_id=group_id, flow_id=None)
        jobs.transition(s, ids[0], from_statuses={"Created"}, to_status="Pending")
    with transaction(store) as s:
        assert [g.id for g in jobs.list_groups(s, flow_id=a.id)] == [ids[2], ids[0]]
        assert jobs.count_groups(s) == 4 and jobs.count_groups(s, deployment_id=deployment.id) == 1
        assert [g.id for g in jobs.list_groups(s, status="Pending")] == [ids[0]]
        assert jobs.count_groups(s, status="Created") == 3
        assert [g.id for g in jobs.list_groups(s, limit=1, offset=1)] == [ids[2]]
        assert [j.job_group_id for j in jobs.jobs_of(s, ids[1])] == [ids[1]]
        assert jobs.count_jobs(s) == 3 and jobs.count_jobs(s, job_group_id=ids[0]) == 1
        with pytest.raises(NotFound):
            jobs.get_group(s, 999_999)
