"""The reads the dashboard needs, which every client has: counts by state, the trigger of
each execution, and validating a definition without storing it (errors at their line)."""

from __future__ import annotations

from pathlib import Path

from tests.integration.test_api import QUICK, assert_problem, serving

BROKEN_YAML = """name: broken
dag:
  nodes:
    - id: a
      handler: noop
    - id: b
      handler: noop
      dependencies: [nowhere]
"""


async def test_counts_follow_the_list_filters(tmp_path: Path) -> None:
    async with serving(tmp_path) as api:
        first = await api.submit(QUICK)
        await api.submit(QUICK)
        counts = (await api.client.get("/v1/stats/executions")).json()
        assert counts == {"total": 2, "by_status": {"PENDING": 2}, "series": None}
        # Ids begin with the time they were made: two made together share their start.
        parts = [{"id_prefix": first[:-6]}, {"id_suffix": first[-8:]}]
        parts += [{"id_prefix": first[:-6].upper()}, {"id_suffix": first[-8:].upper()}]
        for part in parts:
            narrowed = await api.client.get(
                "/v1/stats/executions", params={**part, "trigger": "api"}
            )
            assert narrowed.json()["by_status"] == {"PENDING": 1}, part
            listed = await api.client.get("/v1/workflows", params=part)
            assert [item["execution_id"] for item in listed.json()["items"]] == [first]
        assert_problem(await api.client.get("/v1/workflows?id_suffix=a%25"), 422)
        none = await api.client.get("/v1/stats/executions", params={"trigger": "schedule"})
        assert none.json()["total"] == 0 and none.json()["by_status"] == {}
        listed = (await api.client.get("/v1/workflows", params={"trigger": "api"})).json()
        assert {item["trigger"] for item in listed["items"]} == {"api"}
        over_time = await api.client.get("/v1/stats/executions", params={"buckets": 4})
        series = over_time.json()["series"]
        assert len(series["buckets"]) == 4 and series["bucket_seconds"] == 86400 / 4
        assert series["buckets"][-1]["by_status"] == {"PENDING": 2}  # made just now
        assert [b["by_status"] for b in series["buckets"][:3]] == [{}, {}, {}]
        backwards = {"buckets": 2, "created_after": 200, "created_before": 100}
        empty = (await api.client.get("/v1/stats/executions", params=backwards)).json()
        assert empty["total"] == 0 and empty["series"]["buckets"] == []
        assert_problem(await api.client.get("/v1/stats/executions?buckets=501"), 422)
        assert_problem(await api.client.get("/v1/stats/executions?trigger=cron"), 422)
        assert_problem(await api.client.get("/v1/stats/executions?status=NOPE"), 422)


async def test_validate_names_the_line_and_stores_nothing(tmp_path: Path) -> None:
    async with serving(tmp_path) as api:
        yaml = {"Content-Type": "application/yaml"}
        problem = assert_problem(
            await api.client.post("/v1/workflow/validate", content=BROKEN_YAML, headers=yaml),
            422,
        )
        lines = {item["line"] for item in problem["errors"]}
        assert 8 in lines, problem
        good = await api.client.post("/v1/workflow/validate", json=QUICK)
        assert good.status_code == 200, good.text
        assert good.json() == {
            "valid": True,
            "name": "quick",
            "version": None,
            "nodes": 3,
            "warnings": [],
        }
        assert (await api.client.get("/v1/definitions")).json()["items"] == []
        assert_problem(
            await api.client.post(
                "/v1/workflow/validate", content=b"x", headers={"Content-Type": "text/csv"}
            ),
            415,
        )


CHILD = {
    "name": "child-of-three",
    "dag": {
        "nodes": [
            {"id": "first", "handler": "noop"},
            {"id": "ask", "handler": "approval", "dependencies": ["first"]},
            {"id": "last", "handler": "noop", "dependencies": ["ask"]},
        ]
    },
}
PARENT = {
    "name": "parent-of-one",
    "dag": {
        "nodes": [
            {"id": "call", "handler": "workflow", "config": {"workflow": "child-of-three"}},
            {"id": "after", "handler": "noop", "dependencies": ["call"]},
        ]
    },
}


async def test_a_workflow_node_shows_its_childs_progress(tmp_path: Path) -> None:
    async with serving(tmp_path) as api:
        await api.submit(CHILD)  # stores the child's definition
        parent = await api.start(PARENT)
        detail = await api.until(parent, "WAITING")
        child = detail["nodes"]["call"]["child"]
        assert child["status"] == "WAITING" and child["execution_id"] != parent
        assert (child["nodes_done"], child["nodes_total"], child["nodes_failed"]) == (1, 3, 0)
        assert detail["nodes"]["after"]["child"] is None  # not a workflow node
        # The same without outputs (the dashboard's and the CLI's poll).
        lean = await api.client.get(f"/v1/workflows/{parent}?include_outputs=false")
        assert lean.json()["nodes"]["call"]["child"] == child
        approved = await api.client.post(
            f"/v1/workflows/{child['execution_id']}/nodes/ask/approve", json={}
        )
        assert approved.status_code == 202, approved.text
        done = await api.until(parent, "COMPLETED")
        assert done["nodes"]["call"]["child"] == {
            "execution_id": child["execution_id"],
            "status": "COMPLETED",
            "nodes_total": 3,
            "nodes_done": 3,
            "nodes_failed": 0,
        }
        # A child that fails fails its node, which still shows it.
        second = await api.start(PARENT)
        waiting = (await api.until(second, "WAITING"))["nodes"]["call"]["child"]
        rejected = await api.client.post(
            f"/v1/workflows/{waiting['execution_id']}/nodes/ask/reject", json={}
        )
        assert rejected.status_code == 202, rejected.text
        failed = await api.until(second, "FAILED")
        assert failed["nodes"]["call"]["state"] == "FAILED"
        shown = failed["nodes"]["call"]["child"]
        assert shown["execution_id"] == waiting["execution_id"] and shown["status"] == "FAILED"
        assert shown["nodes_failed"] == 1 and shown["nodes_done"] == 2  # "last": skipped
        # An output naming another execution is not a child.
        posing = {
            "name": "posing",
            "dag": {
                "nodes": [
                    {
                        "id": "liar",
                        "handler": "noop",
                        "config": {"value": {"child_execution_id": child["execution_id"]}},
                    }
                ]
            },
        }
        liar = await api.until(await api.start(posing), "COMPLETED")
        assert liar["nodes"]["liar"]["output"] == {"child_execution_id": child["execution_id"]}
        assert liar["nodes"]["liar"]["child"] is None
        # A public field: described in the OpenAPI document.
        schemas = (await api.client.get("/openapi.json")).json()["components"]["schemas"]
        assert "child" in schemas["NodeDetail"]["properties"]
        assert set(schemas["ChildProgress"]["required"]) >= {"execution_id", "status"}


COMMENTED = """# The nightly export: kept as written, comments and all.
name: commented
dag:
  nodes:
    - id: only   # a single step
      handler: noop
"""


async def test_a_definition_keeps_the_text_it_was_submitted_as(tmp_path: Path) -> None:
    async with serving(tmp_path) as api:
        yaml = {"Content-Type": "application/yaml"}
        stored = await api.client.post("/v1/workflow", content=COMMENTED, headers=yaml)
        assert stored.status_code == 201, stored.text
        plain = (await api.client.get("/v1/definitions/commented")).json()
        assert plain["source"] is None and plain["source_format"] == "yaml"  # not asked for
        asked = await api.client.get("/v1/definitions/commented?include_source=true")
        assert asked.json()["source"] == COMMENTED
        assert asked.json()["spec"]["dag"]["nodes"][0]["id"] == "only"
        # JSON, as sent (its spacing kept); the same content again is the same version,
        # which keeps the text it was first submitted as.
        sent = '{"name": "quick-json",\n "dag": {"nodes": [{"id": "a", "handler": "noop"}]}}'
        json_headers = {"Content-Type": "application/json"}
        await api.client.post("/v1/workflow", content=sent, headers=json_headers)
        again = '{"name":"quick-json","dag":{"nodes":[{"id":"a","handler":"noop"}]}}'
        await api.client.post("/v1/workflow", content=again, headers=json_headers)
        versions = (await api.client.get("/v1/definitions?name=quick-json")).json()["items"]
        assert len(versions) == 1
        kept = await api.client.get("/v1/definitions/quick-json?include_source=true&version=1")
        assert kept.json()["source"] == sent and kept.json()["source_format"] == "json"
        assert_problem(await api.client.get("/v1/definitions/commented?include_source=maybe"), 422)
        document = (await api.client.get("/openapi.json")).json()
        assert "source" in document["components"]["schemas"]["DefinitionDetail"]["properties"]
        parameters = document["paths"]["/v1/definitions/{name}"]["get"]["parameters"]
        assert "include_source" in {p["name"] for p in parameters}
