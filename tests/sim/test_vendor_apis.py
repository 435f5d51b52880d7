"""The look-alike APIs: documented shapes, write semantics and throttle signals per vendor."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import httpx
import pytest

from handoff.sim.clock import SimClock
from handoff.sim.scenario import EMAIL_DOMAINS
from handoff.sim.scenario_config import FaultWindow, ProgramRules
from handoff.sim.stack import SIM_TOKENS, Apis, ServedApp, SimStack, Simulation, build_apis
from handoff.sim.vendors.hubspot import HubSpotApi
from handoff.sim.vendors.shopify import ShopifyApi
from tests.sim.conftest import small

_OPEN: dict[int, tuple[ServedApp, httpx.Client]] = {}


def client_for(app: Any) -> httpx.Client:
    """A real loopback server for `app` (one per app per test) and an HTTP client to it."""
    if id(app) not in _OPEN:
        served = ServedApp(app)
        served.start()
        _OPEN[id(app)] = (served, httpx.Client(base_url=served.url))
    return _OPEN[id(app)][1]


@pytest.fixture(autouse=True)
def _stop_servers() -> Iterator[None]:
    yield
    for served, http in _OPEN.values():
        http.close()
        served.stop()
    _OPEN.clear()


@pytest.fixture(scope="module")
def sim() -> Simulation:
    return Simulation.build(small(customers=20, seed=9))


@pytest.fixture
def apis(sim: Simulation) -> tuple[Apis, SimClock]:
    clock = SimClock(sim.scenario.end)
    return build_apis(clock, sim), clock


# --- Shopify ------------------------------------------------------------------------------


def _gql(client: httpx.Client, query: str, variables: dict[str, Any] | None = None) -> Any:
    response = client.post(
        "/admin/api/2026-01/graphql.json",
        json={"query": query, "variables": variables or {}},
        headers={"X-Shopify-Access-Token": SIM_TOKENS["shopify"]},
    )
    assert response.status_code == 200
    return response.json()


FIND = """query Find($q: String!) { customers(first: 5, query: $q) {
  edges { node { id email tags metafield(namespace: "loyalty", key: "tier") { value } } } } }"""
SET = """mutation Set($metafields: [MetafieldsSetInput!]!) {
  metafieldsSet(metafields: $metafields) {
    metafields { key value compareDigest } userErrors { field message code } } }"""


def test_shopify_lookup_by_email_and_cost(apis: tuple[Apis, SimClock], sim: Simulation) -> None:
    client = client_for(apis[0].shopify.app)
    customer = next(
        c for c in sim.scenario.customers if c.email and c.email.split("@")[1] in EMAIL_DOMAINS
    )
    data = _gql(client, FIND, {"q": f"email:{customer.email.upper()}"})
    nodes = [e["node"] for e in data["data"]["customers"]["edges"]]
    assert customer.gid in [n["id"] for n in nodes]
    assert nodes[0]["metafield"] is None
    cost = data["extensions"]["cost"]
    assert cost["requestedQueryCost"] == 7 and cost["actualQueryCost"] == 2 + len(nodes)
    assert cost["throttleStatus"]["maximumAvailable"] == 2000.0
    inline = _gql(client, f'{{ customer(id: "{customer.gid}") {{ id email }} }}')
    assert inline["data"]["customer"]["email"] == customer.email
    denied = client.post("/admin/api/2026-01/graphql.json", json={"query": FIND})
    assert denied.status_code == 401


def test_shopify_metafields_set_compare_digest_and_cap(
    apis: tuple[Apis, SimClock], sim: Simulation
) -> None:
    client = client_for(apis[0].shopify.app)
    owner = sim.scenario.customers[0].gid
    field = {
        "ownerId": owner,
        "namespace": "loyalty",
        "key": "tier",
        "type": "single_line_text_field",
    }
    created = _gql(client, SET, {"metafields": [field | {"value": "Gold", "compareDigest": None}]})
    result = created["data"]["metafieldsSet"]
    assert result["userErrors"] == [] and result["metafields"][0]["value"] == "Gold"
    digest = result["metafields"][0]["compareDigest"]
    # `null` = must not exist: a second create conflicts, and nothing else in the call lands
    other = {**field, "key": "points", "type": "number_integer", "value": "120"}
    stale = _gql(
        client, SET, {"metafields": [other, field | {"value": "Silver", "compareDigest": None}]}
    )
    errors = stale["data"]["metafieldsSet"]["userErrors"]
    assert [e["code"] for e in errors] == ["STALE_OBJECT"]
    assert stale["data"]["metafieldsSet"]["metafields"] is None
    assert ("loyalty", "points") not in apis[0].shopify.customers[
        sim.scenario.customers[0].shopify_id
    ].metafields
    updated = _gql(
        client, SET, {"metafields": [field | {"value": "Silver", "compareDigest": digest}]}
    )
    new_digest = updated["data"]["metafieldsSet"]["metafields"][0]["compareDigest"]
    assert new_digest != digest
    replay = _gql(
        client, SET, {"metafields": [field | {"value": "Bronze", "compareDigest": digest}]}
    )
    assert replay["data"]["metafieldsSet"]["userErrors"][0]["code"] == "STALE_OBJECT"
    found = _gql(client, FIND, {"q": f"id:{sim.scenario.customers[0].shopify_id}"})
    assert found["data"]["customers"]["edges"][0]["node"]["metafield"]["value"] == "Silver"
    too_many = [field | {"key": f"k{i}", "value": "x"} for i in range(26)]
    capped = _gql(client, SET, {"metafields": too_many})
    assert capped["errors"][0]["extensions"]["code"] == "MAX_INPUT_SIZE_EXCEEDED"
    assert capped["data"]["metafieldsSet"] is None
    bad_type = _gql(
        client, SET, {"metafields": [{**field, "key": "vip", "type": "boolean", "value": "yes"}]}
    )
    assert bad_type["data"]["metafieldsSet"]["userErrors"][0]["code"] == "INVALID_VALUE"


def test_shopify_tags_and_pos_export(apis: tuple[Apis, SimClock], sim: Simulation) -> None:
    shop = apis[0].shopify
    client = client_for(shop.app)
    customer = sim.scenario.customers[1]
    mutation = (
        "mutation($id: ID!, $tags: [String!]!) "
        "{ tagsAdd(id: $id, tags: $tags) { node { id } userErrors { message } } }"
    )
    added = _gql(client, mutation, {"id": customer.gid, "tags": ["VIP", "loyalty-gold"]})
    assert added["data"]["tagsAdd"] == {"node": {"id": customer.gid}, "userErrors": []}
    row = next(r for r in shop.export_rows() if r["id"] == str(customer.shopify_id))
    assert row["is_vip"] is True and "loyalty-gold" in row["tags"]
    removed = _gql(
        client, mutation.replace("tagsAdd", "tagsRemove"), {"id": customer.gid, "tags": ["vip"]}
    )
    assert removed["data"]["tagsRemove"]["userErrors"] == []
    row = next(r for r in shop.export_rows() if r["id"] == str(customer.shopify_id))
    assert row["is_vip"] is False


def test_shopify_cost_throttling(sim: Simulation) -> None:
    clock = SimClock(sim.scenario.end)
    shop = ShopifyApi(clock, token="t", graphql_maximum=100, graphql_restore_rate=10)
    shop.load(sim.world)
    client = client_for(shop.app)
    query = "{ customers(first: 40) { edges { node { id } } } }"

    def ask() -> Any:
        return client.post(
            "/admin/api/2026-01/graphql.json",
            json={"query": query},
            headers={"X-Shopify-Access-Token": "t"},
        ).json()

    assert "data" in ask() and "data" in ask()  # requested 42 each, refunded the unused part
    spent = 0
    while "data" in (answer := ask()):
        spent += 1
        assert spent < 10
    assert answer["errors"][0]["message"] == "Throttled"
    assert answer["errors"][0]["extensions"]["code"] == "THROTTLED"
    status = answer["extensions"]["cost"]["throttleStatus"]
    assert status["currentlyAvailable"] < 42 and status["restoreRate"] == 10
    clock.advance(5)
    assert "data" in ask()


def test_shopify_rest_leaky_bucket(apis: tuple[Apis, SimClock], sim: Simulation) -> None:
    client = client_for(apis[0].shopify.app)
    url = f"/admin/api/2026-01/customers/{sim.scenario.customers[0].shopify_id}.json"
    headers = {"X-Shopify-Access-Token": SIM_TOKENS["shopify"]}
    for i in range(40):
        response = client.get(url, headers=headers)
        assert response.status_code == 200
        assert response.headers["X-Shopify-Shop-Api-Call-Limit"] == f"{i + 1}/40"
    refused = client.get(url, headers=headers)
    assert refused.status_code == 429 and refused.headers["Retry-After"] == "2.0"
    apis[1].advance(1)  # leaks 2
    assert client.get(url, headers=headers).status_code == 200


# --- HubSpot ------------------------------------------------------------------------------

HS = {"Authorization": f"Bearer {SIM_TOKENS['hubspot']}"}
CONTACTS = "/crm/v3/objects/contacts"


def test_hubspot_contacts(apis: tuple[Apis, SimClock], sim: Simulation) -> None:
    client = client_for(apis[0].hubspot.app)
    created = client.post(
        CONTACTS, json={"properties": {"email": "New@Example.com", "firstname": "Ny"}}, headers=HS
    )
    assert created.status_code == 201
    contact_id = created.json()["id"]
    conflict = client.post(CONTACTS, json={"properties": {"email": "new@example.com"}}, headers=HS)
    assert conflict.status_code == 409 and conflict.json()["category"] == "CONFLICT"
    assert contact_id in conflict.json()["message"]
    read = client.get(
        f"{CONTACTS}/new@example.com?idProperty=email&properties=firstname,vip_status", headers=HS
    )
    assert read.json()["properties"] == {"firstname": "Ny", "vip_status": None}
    patched = client.patch(
        f"{CONTACTS}/{contact_id}", json={"properties": {"vip_status": "true"}}, headers=HS
    )
    assert patched.status_code == 200 and patched.json()["properties"]["vip_status"] == "true"
    known = sim.scenario.contacts[0]
    upsert = client.post(
        f"{CONTACTS}/batch/upsert",
        json={
            "inputs": [
                {
                    "id": "brand.new@example.com",
                    "idProperty": "email",
                    "properties": {"loyalty_tier": "Gold"},
                },
                {
                    "id": known.email,
                    "idProperty": "email",
                    "properties": {"loyalty_tier": "Silver"},
                },
            ]
        },
        headers=HS,
    )
    assert upsert.status_code == 200 and upsert.json()["status"] == "COMPLETE"
    assert [r["new"] for r in upsert.json()["results"]] == [True, False]
    batch = client.post(
        f"{CONTACTS}/batch/read",
        json={
            "inputs": [{"id": str(known.contact_id)}, {"id": "999"}],
            "properties": ["loyalty_tier"],
        },
        headers=HS,
    )
    assert batch.status_code == 207
    assert batch.json()["results"][0]["properties"]["loyalty_tier"] == "Silver"
    assert batch.json()["errors"][0]["context"]["ids"] == ["999"]
    assert client.get(f"{CONTACTS}/1", headers={"Authorization": "Bearer nope"}).status_code == 401


def test_hubspot_ten_secondly_limit(sim: Simulation) -> None:
    clock = SimClock(sim.scenario.end.replace(microsecond=0, second=0))
    api = HubSpotApi(clock, token="t")
    api.load(sim.world)
    client = client_for(api.app)
    url = f"{CONTACTS}/{sim.scenario.contacts[0].contact_id}"
    for i in range(100):
        response = client.get(url, headers={"Authorization": "Bearer t"})
        assert response.status_code == 200
        assert response.headers["X-HubSpot-RateLimit-Remaining"] == str(99 - i)
    refused = client.get(url, headers={"Authorization": "Bearer t"})
    assert refused.status_code == 429
    body = refused.json()
    assert body["errorType"] == "RATE_LIMIT" and body["policyName"] == "TEN_SECONDLY_ROLLING"
    assert refused.headers["X-HubSpot-RateLimit-Max"] == "100"
    assert refused.headers["X-HubSpot-RateLimit-Interval-Milliseconds"] == "10000"
    clock.advance(10)
    assert client.get(url, headers={"Authorization": "Bearer t"}).status_code == 200


# --- LoyaltyLion ---------------------------------------------------------------------------

LL = {"Authorization": f"Bearer {SIM_TOKENS['loyaltylion']}"}


def test_loyaltylion_points_and_exports(apis: tuple[Apis, SimClock], sim: Simulation) -> None:
    ll = apis[0].loyaltylion
    client = client_for(ll.app)
    member = sim.world.loyalty.members[0]
    before = client.get(f"/v2/customers/{member.member_id}", headers=LL).json()
    add = client.post(
        f"/v2/customers/{member.member_id}/points",
        json={"points": 100, "reason": "goodwill"},
        headers=LL,
    )
    assert add.status_code == 201
    remove = client.post(
        f"/v2/customers/{member.member_id}/remove_points", json={"points": 30}, headers=LL
    )
    assert remove.status_code == 201
    after = client.get(f"/v2/customers/{member.member_id}", headers=LL).json()
    assert after["points_approved"] == before["points_approved"] + 70
    for bad in (0, 1_000_001, "10", True):
        r = client.post(
            f"/v2/customers/{member.member_id}/points", json={"points": bad}, headers=LL
        )
        assert r.status_code == 400
    assert (
        client.post("/v2/customers/404/points", json={"points": 1}, headers=LL).status_code == 404
    )
    found = client.get(f"/v2/customers?email={member.email}", headers=LL).json()["customers"]
    assert member.member_id in [c["merchant_id"] for c in found]
    csv_text = client.get("/exports/activity.csv", headers=LL).text
    assert csv_text.splitlines()[0].startswith("event_id,member_id,kind,points")
    assert ",adjust,100," in csv_text and ",adjust,-30," in csv_text


def test_loyaltylion_approval_period_and_tiers(sim: Simulation) -> None:
    clock = SimClock(sim.scenario.end)
    apis = build_apis(clock, sim)
    ll = apis.loyaltylion
    ll.rules = ProgramRules(pending_days=14)
    client = client_for(ll.app)
    member = sim.world.loyalty.members[0]
    start = client.get(f"/v2/customers/{member.member_id}", headers=LL).json()
    order = {
        "merchant_id": "SO-9",
        "customer_id": member.member_id,
        "total": "2120.00",
        "total_shipping": "10.00",
        "total_tax": "110.00",
    }
    assert client.post("/v2/orders", json=order, headers=LL).status_code == 201
    assert client.post("/v2/orders", json=order, headers=LL).status_code == 409
    pending = client.get(f"/v2/customers/{member.member_id}", headers=LL).json()
    assert (
        pending["points_pending"] == 2000 and pending["points_approved"] == start["points_approved"]
    )
    assert (
        pending["loyalty_tier_membership"]["loyalty_tier"]["name"] == "Gold"
    )  # spend counts at once
    clock.advance(timedelta(days=14, seconds=1))
    vested = client.get(f"/v2/customers/{member.member_id}", headers=LL).json()
    assert vested["points_pending"] == 0
    assert vested["points_approved"] == start["points_approved"] + 2000


def test_loyaltylion_20_per_second(apis: tuple[Apis, SimClock], sim: Simulation) -> None:
    client = client_for(apis[0].loyaltylion.app)
    apis[1].advance_to(apis[1].now().replace(microsecond=0) + timedelta(seconds=1))
    url = f"/v2/customers/{sim.world.loyalty.members[0].member_id}"
    statuses = [client.get(url, headers=LL).status_code for _ in range(21)]
    assert statuses[:20] == [200] * 20 and statuses[20] == 429


# --- Zendesk ------------------------------------------------------------------------------

ZD = {"Authorization": f"Bearer {SIM_TOKENS['zendesk']}"}


def test_zendesk_user_fields(apis: tuple[Apis, SimClock], sim: Simulation) -> None:
    zd = apis[0].zendesk
    client = client_for(zd.app)
    user = sim.scenario.helpdesk_users[0]
    put = client.put(
        f"/api/v2/users/{user.external_id}.json",
        json={"user": {"user_fields": {"vip": True, "loyalty_tier": "Gold", "not_a_field": 1}}},
        headers=ZD,
    )
    assert put.status_code == 200
    fields = put.json()["user"]["user_fields"]
    assert (
        fields["vip"] is True and fields["loyalty_tier"] == "Gold" and "not_a_field" not in fields
    )
    wrong = client.put(
        f"/api/v2/users/{user.external_id}",
        json={"user": {"user_fields": {"vip": "yes"}}},
        headers=ZD,
    )
    assert wrong.status_code == 422
    assert client.put("/api/v2/users/1", json={"user": {}}, headers=ZD).status_code == 404
    search = client.get(f"/api/v2/users/search.json?query=email:{user.email}", headers=ZD).json()
    assert search["count"] == 1 and search["users"][0]["user_fields"]["vip"] is True
    made = client.post(
        "/api/v2/users/create_or_update",
        json={"user": {"email": "x@example.com", "name": "X"}},
        headers=ZD,
    )
    assert made.status_code == 201
    row = next(r for r in zd.export_rows() if r["id"] == user.external_id)
    assert row["is_vip"] is True


def test_zendesk_429_with_retry_after(sim: Simulation) -> None:
    from handoff.sim.vendors.zendesk import ZendeskApi

    clock = SimClock(sim.scenario.end.replace(second=0, microsecond=0) + timedelta(seconds=15))
    zd = ZendeskApi(clock, token="t", per_minute=10)
    zd.load(sim.world)
    client = client_for(zd.app)
    url = f"/api/v2/users/{sim.scenario.helpdesk_users[0].external_id}"
    for _ in range(10):
        assert client.get(url, headers={"Authorization": "Bearer t"}).status_code == 200
    refused = client.get(url, headers={"Authorization": "Bearer t"})
    assert refused.status_code == 429 and refused.headers["Retry-After"] == "45"
    assert (
        refused.headers["X-Rate-Limit"] == "10" and refused.headers["X-Rate-Limit-Remaining"] == "0"
    )
    clock.advance(45)
    assert client.get(url, headers={"Authorization": "Bearer t"}).status_code == 200


# --- Klaviyo ------------------------------------------------------------------------------

KL = {"Authorization": f"Klaviyo-API-Key {SIM_TOKENS['klaviyo']}", "revision": "2026-07-15"}


def _profile(**attributes: Any) -> dict[str, Any]:
    return {"data": {"type": "profile", "attributes": attributes}}


def test_klaviyo_profile_import_null_clears_omitted_keeps(apis: tuple[Apis, SimClock]) -> None:
    client = client_for(apis[0].klaviyo.app)
    first = client.post(
        "/api/profile-import",
        json=_profile(
            email="k@example.com", first_name="K", properties={"is_vip": True, "tier": "Gold"}
        ),
        headers=KL,
    )
    assert first.status_code == 201
    pid = first.json()["data"]["id"]
    again = client.post(
        "/api/profile-import",
        json=_profile(email="K@example.com", properties={"tier": None}),
        headers=KL,
    )
    assert again.status_code == 200 and again.json()["data"]["id"] == pid
    attributes = again.json()["data"]["attributes"]
    assert attributes["first_name"] == "K"  # omitted: kept
    assert attributes["properties"] == {"is_vip": True}  # null: cleared
    cleared = client.patch(
        f"/api/profiles/{pid}",
        json={"data": {"type": "profile", "id": pid, "attributes": {"first_name": None}}},
        headers=KL,
    )
    assert cleared.json()["data"]["attributes"]["first_name"] is None
    no_revision = client.post(
        "/api/profile-import",
        json=_profile(email="z@example.com"),
        headers={"Authorization": KL["Authorization"]},
    )
    assert no_revision.status_code == 400
    assert (
        client.post(
            "/api/profile-import", json=_profile(first_name="nobody"), headers=KL
        ).status_code
        == 400
    )


def test_klaviyo_burst_and_steady_limits(apis: tuple[Apis, SimClock]) -> None:
    client = client_for(apis[0].klaviyo.app)
    clock = apis[1]
    clock.advance_to(clock.now().replace(second=0, microsecond=0) + timedelta(minutes=1))
    answers: list[int] = []
    for _second in range(12):
        answers += [client.get("/api/profiles/none", headers=KL).status_code for _ in range(76)]
        clock.advance(1)
    assert answers[:75] == [404] * 75 and answers[75] == 429  # 75/s burst
    assert answers.count(404) == 750  # 750/min steady
    refused = client.get("/api/profiles/none", headers=KL)
    assert refused.status_code == 429
    error = refused.json()["errors"][0]
    assert error["code"] == "throttled" and int(refused.headers["Retry-After"]) > 1


# --- ERP, fault windows and real servers ----------------------------------------------------


def test_erp_api_and_exports(apis: tuple[Apis, SimClock], sim: Simulation) -> None:
    client = client_for(apis[0].erp.app)
    headers = {"Authorization": f"Bearer {SIM_TOKENS['erp']}"}
    order = sim.scenario.orders[0]
    got = client.get(f"/api/orders/{order.order_id}", headers=headers).json()["order"]
    assert got["customer_id"] == order.erp_customer_id and got["status"] == order.status
    listed = client.get(f"/api/orders?customer_id={order.erp_customer_id}", headers=headers).json()
    assert order.order_id in [o["order_id"] for o in listed["orders"]]
    csv_text = client.get("/exports/orders.csv", headers=headers).text
    assert csv_text.splitlines()[0].startswith("order_id,customer_id,")
    assert len(csv_text.splitlines()) == len(sim.scenario.orders) + 1


def test_api_fault_windows(sim: Simulation) -> None:
    config = small(customers=5, seed=9)
    windows = (
        FaultWindow(
            target="hubspot", kind="throttle", start_hours=1, duration_hours=1, retry_after=30
        ),
        FaultWindow(target="zendesk", kind="outage", start_hours=1, duration_hours=1, status=503),
        FaultWindow(target="klaviyo", kind="errors", start_hours=1, duration_hours=1, rate=0.5),
    )
    faulty = Simulation.build(
        config.model_copy(update={"faults": config.faults.model_copy(update={"windows": windows})})
    )
    labelled = {(x.fault, x.handoff) for x in faulty.labels() if x.fault.endswith("_window")}
    assert labelled == {
        ("throttle_window", "hub->crm"),
        ("outage_window", "hub->helpdesk"),
        ("errors_window", "hub->comms"),
    }
    clock = SimClock(faulty.scenario.start + timedelta(minutes=90))
    apis = build_apis(clock, faulty)
    hs = client_for(apis.hubspot.app).get(f"{CONTACTS}/1", headers=HS)
    assert hs.status_code == 429 and hs.headers["Retry-After"] == "30"
    zd = client_for(apis.zendesk.app).get("/api/v2/users/1", headers=ZD)
    assert zd.status_code == 503
    kl = [
        client_for(apis.klaviyo.app).get("/api/profiles/x", headers=KL).status_code
        for _ in range(40)
    ]
    assert {500, 502, 503} & set(kl) and 404 in kl
    clock.advance(timedelta(hours=1))
    assert client_for(apis.zendesk.app).get("/api/v2/users/1", headers=ZD).status_code == 404


def test_stack_serves_every_look_alike_on_loopback(sim: Simulation) -> None:
    clock = SimClock(sim.scenario.end)
    with SimStack(clock) as stack:
        stack.load(sim)
        assert set(stack.urls) == {"shopify", "hubspot", "loyaltylion", "zendesk", "klaviyo", "erp"}
        assert all(url.startswith("http://127.0.0.1:") for url in stack.urls.values())
        member = sim.world.loyalty.members[0]
        response = httpx.get(
            f"{stack.urls['loyaltylion']}/v2/customers/{member.member_id}", headers=LL
        )
        assert response.status_code == 200 and response.json()["merchant_id"] == member.member_id
        gql = httpx.post(
            f"{stack.urls['shopify']}/admin/api/2026-01/graphql.json",
            content=json.dumps({"query": FIND, "variables": {"q": "email:nobody@example.com"}}),
            headers={
                "X-Shopify-Access-Token": SIM_TOKENS["shopify"],
                "Content-Type": "application/json",
            },
        )
        assert gql.json()["data"]["customers"]["edges"] == []
        assert stack.apis.loyaltylion.log[-1].status == 200
    assert stack.servers == {}
