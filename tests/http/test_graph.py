"""GraphClient: paging, $batch chunking and dependsOn, per-item 429, errors with the permission a 403 means."""

from __future__ import annotations

import json
import socket
from typing import Any

import pytest
import responses
from mockhttp import GRAPH, Waits, make_session
from responses import matchers

from cbacheck.collect.graph import BatchRequest, GraphClient, chunk_batch, permission_for
from cbacheck.config import Settings
from cbacheck.errors import GraphError

TOKEN = "eyJ.fake-bearer.sig"


class StaticToken:
    def __init__(self) -> None:
        self.scopes: list[str] = []

    def token(self, scope: str) -> str:
        self.scopes.append(scope)
        return TOKEN


def client(waits: Waits, *, batching: bool = True, retries: int = 2) -> GraphClient:
    return GraphClient(
        "https://graph.microsoft.com", StaticToken(), make_session(Settings(retries=retries), waits), batching=batching
    )


def batch_body(call: Any) -> list[dict[str, Any]]:
    return list(json.loads(call.request.body)["requests"])


def ok_items(call_body: list[dict[str, Any]]) -> dict[str, Any]:
    return {"responses": [{"id": r["id"], "status": 200, "headers": {}, "body": {"n": r["id"]}} for r in call_body]}


def test_get_sends_the_bearer_for_the_graph_scope(mock: responses.RequestsMock, waits: Waits) -> None:
    mock.get(
        f"{GRAPH}/organization",
        json={"value": [{"id": "t"}]},
        match=[matchers.header_matcher({"Authorization": f"Bearer {TOKEN}"})],
    )
    graph = client(waits)

    answer = graph.get("/organization")

    assert answer.value == [{"id": "t"}]
    assert graph.token_provider.scopes == ["https://graph.microsoft.com/.default"]  # type: ignore[attr-defined]
    assert answer.source.status == 200 and answer.source.url == f"{GRAPH}/organization"


def test_get_all_follows_next_link_verbatim_and_merges_pages(mock: responses.RequestsMock, waits: Waits) -> None:
    page2 = f"{GRAPH}/applications?$top=2&$skiptoken=X'4453707402000100'"
    page3 = f"{GRAPH}/applications?$top=2&$skiptoken=Y'99'"
    mock.get(f"{GRAPH}/applications?$top=2", json={"value": [1, 2], "@odata.nextLink": page2})
    mock.get(page2, json={"value": [3, 4], "@odata.nextLink": page3})
    mock.get(page3, json={"value": [5]})
    graph = client(waits)

    answer = graph.get_all("/applications", {"$top": "2"})

    assert answer.value == [1, 2, 3, 4, 5]
    assert "@odata.nextLink" not in answer.body
    assert [c.request.url for c in mock.calls][1:] == [page2, page3]
    assert graph.stats.graph_round_trips == 3


def test_batch_of_45_takes_three_round_trips_of_at_most_20(mock: responses.RequestsMock, waits: Waits) -> None:
    def answer(request: Any) -> tuple[int, dict[str, str], str]:
        return 200, {}, json.dumps(ok_items(json.loads(request.body)["requests"]))

    mock.add_callback(responses.POST, f"{GRAPH}/$batch", callback=answer)
    graph = client(waits)

    answers = graph.batch([BatchRequest(str(i), f"/users/{i}") for i in range(45)])

    assert [len(batch_body(c)) for c in mock.calls] == [20, 20, 5]
    assert sorted(answers, key=int) == [str(i) for i in range(45)]
    assert answers["44"].body == {"n": "44"} and answers["44"].source.batched
    assert graph.stats.graph_round_trips == 3
    assert graph.stats.graph_requests == 45


def test_depends_on_keeps_a_group_in_one_batch(waits: Waits) -> None:
    singles = [BatchRequest(f"s{i}", f"/x/{i}") for i in range(19)]
    pair = [BatchRequest("a", "/a"), BatchRequest("b", "/b", depends_on=("a",))]

    chunks = chunk_batch([*singles, *pair])

    assert [len(c) for c in chunks] == [19, 2]
    assert [r.id for r in chunks[1]] == ["a", "b"]
    assert BatchRequest("b", "/b", depends_on=("a",)).as_json()["dependsOn"] == ["a"]


def test_a_dependency_cycle_is_refused() -> None:
    with pytest.raises(ValueError, match="cycle"):
        chunk_batch([BatchRequest("a", "/a", depends_on=("b",)), BatchRequest("b", "/b", depends_on=("a",))])


def test_a_throttled_item_is_retried_once_after_its_retry_after(mock: responses.RequestsMock, waits: Waits) -> None:
    first = {
        "responses": [
            {"id": "1", "status": 200, "body": {"ok": 1}},
            {"id": "2", "status": 429, "headers": {"Retry-After": "4"}, "body": {"error": {"code": "TooManyRequests"}}},
        ]
    }
    mock.post(f"{GRAPH}/$batch", json=first)
    mock.post(f"{GRAPH}/$batch", json={"responses": [{"id": "2", "status": 200, "body": {"ok": 2}}]})
    graph = client(waits)

    answers = graph.batch([BatchRequest("1", "/a"), BatchRequest("2", "/b")])

    assert answers["2"].status == 200 and answers["2"].body == {"ok": 2}
    assert [r["id"] for r in batch_body(mock.calls[1])] == ["2"]
    assert waits.seconds == [4.0]


def test_an_item_still_throttled_after_one_retry_keeps_its_429(mock: responses.RequestsMock, waits: Waits) -> None:
    throttled = {"id": "1", "status": 429, "headers": {"Retry-After": "1"}, "body": {"error": {"code": "TooMany"}}}
    mock.post(f"{GRAPH}/$batch", json={"responses": [throttled]})

    answers = client(waits).batch([BatchRequest("1", "/a")])

    assert len(mock.calls) == 2
    assert answers["1"].status == 429
    assert "429 TooMany" in str(answers["1"].error())


def test_batching_off_sends_one_request_each_in_dependency_order(mock: responses.RequestsMock, waits: Waits) -> None:
    mock.get(f"{GRAPH}/a", json={"v": "a"})
    mock.get(f"{GRAPH}/b", status=404, json={"error": {"code": "Request_ResourceNotFound", "message": "gone"}})
    graph = client(waits, batching=False)

    answers = graph.batch(
        [BatchRequest("c", "/c", depends_on=("b",)), BatchRequest("b", "/b"), BatchRequest("a", "/a")]
    )

    assert [c.request.url for c in mock.calls] == [f"{GRAPH}/b", f"{GRAPH}/a"]
    assert answers["a"].body == {"v": "a"}
    assert answers["b"].status == 404
    assert answers["c"].status == 424  # as Graph answers a request whose dependency failed
    assert graph.stats.graph_round_trips == 2


def test_403_names_the_missing_permission_and_keeps_the_ids(mock: responses.RequestsMock, waits: Waits) -> None:
    mock.get(
        f"{GRAPH}/roleManagement/directory/roleAssignments",
        status=403,
        json={
            "error": {
                "code": "Authorization_RequestDenied",
                "message": "Insufficient privileges to complete the operation.",
                "innerError": {"date": "2026-05-01T10:00:00", "request-id": "req-1", "client-request-id": "cli-1"},
            }
        },
    )

    with pytest.raises(GraphError) as caught:
        client(waits).get("/roleManagement/directory/roleAssignments")

    err = caught.value
    assert (err.status, err.code, err.request_id, err.client_request_id) == (
        403,
        "Authorization_RequestDenied",
        "req-1",
        "cli-1",
    )
    assert "RoleManagement.Read.Directory" in str(err)
    assert "403 Authorization_RequestDenied: Insufficient privileges" in str(err)
    assert TOKEN not in str(err)


@pytest.mark.parametrize(
    ("method", "path", "permission"),
    [
        ("GET", "/applications(appId='x')?$select=id", "Application.Read.All"),
        ("GET", "/servicePrincipals/abc/appRoleAssignments", "Application.Read.All"),
        ("GET", "/roleManagement/directory/roleEligibilitySchedules", "RoleManagement.Read.Directory"),
        ("GET", "/organization?$select=id", "Organization.Read.All or Directory.Read.All"),
        ("GET", "/organization/abc?$select=id", "Organization.Read.All"),
        ("PATCH", "/applications/abc", "Application.ReadWrite.All"),
        (
            "POST",
            "/servicePrincipals/abc/appRoleAssignedTo",
            "AppRoleAssignment.ReadWrite.All and Application.Read.All",
        ),
        ("POST", "/roleManagement/directory/roleAssignments", "RoleManagement.ReadWrite.Directory"),
    ],
)
def test_permission_table(method: str, path: str, permission: str) -> None:
    assert permission_for(method, f"{GRAPH}{path}") == permission


def test_garbage_from_the_server_is_an_invalid_response(mock: responses.RequestsMock, waits: Waits) -> None:
    mock.get(f"{GRAPH}/organization", body="<html>Proxy login required</html>", content_type="text/html")

    with pytest.raises(GraphError) as caught:
        client(waits).get("/organization")

    assert caught.value.code == "InvalidResponse"
    assert "Proxy login required" in caught.value.message
    assert TOKEN not in str(caught.value)


def test_error_json_without_graphs_envelope_is_an_invalid_response(mock: responses.RequestsMock, waits: Waits) -> None:
    mock.get(f"{GRAPH}/organization", status=400, json={"unexpected": True})

    with pytest.raises(GraphError) as caught:
        client(waits).get("/organization")

    assert (caught.value.status, caught.value.code) == (400, "InvalidResponse")


def test_bounded_retries_then_graph_error(mock: responses.RequestsMock, waits: Waits) -> None:
    mock.get(f"{GRAPH}/organization", status=503, json={"error": {"code": "ServiceUnavailable", "message": "busy"}})

    with pytest.raises(GraphError) as caught:
        client(waits, retries=2).get("/organization")

    assert len(mock.calls) == 3
    assert caught.value.status == 503 and "run again later" in str(caught.value)


def test_writes_go_out_once_even_on_503(mock: responses.RequestsMock, waits: Waits) -> None:
    mock.post(f"{GRAPH}/servicePrincipals", status=503, json={"error": {"code": "ServiceUnavailable", "message": "x"}})

    with pytest.raises(GraphError):
        client(waits, retries=3).send("POST", "/servicePrincipals", {"appId": "x"})

    assert len(mock.calls) == 1


def test_send_returns_the_created_object(mock: responses.RequestsMock, waits: Waits) -> None:
    mock.post(
        f"{GRAPH}/servicePrincipals",
        status=201,
        json={"id": "sp"},
        match=[matchers.json_params_matcher({"appId": "x"})],
    )

    assert client(waits).send("post", "/servicePrincipals", {"appId": "x"}).body == {"id": "sp"}


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_connection_refused_is_a_graph_error_without_status(waits: Waits) -> None:
    url = f"https://127.0.0.1:{closed_port()}"
    graph = GraphClient(url, StaticToken(), make_session(Settings(retries=1), waits))

    with pytest.raises(GraphError) as caught:
        graph.get("/organization")

    err = caught.value
    assert err.status is None
    assert "could not connect" in err.message and "127.0.0.1" in err.message
    assert "graph_url" in err.hint
    assert graph.stats.retries == 1


def test_a_silent_server_times_out_with_a_clear_message(waits: Waits) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)  # accepts connections at the kernel level, never answers
        url = f"http://127.0.0.1:{listener.getsockname()[1]}"
        session = make_session(Settings(retries=1, timeout_s=0.2), waits)

        with pytest.raises(GraphError) as caught:
            GraphClient(url, StaticToken(), session).get("/organization")

    assert caught.value.status is None
    assert "timed out" in caught.value.message
