import httpx

from tests.conftest import Account


async def test_health(client: httpx.AsyncClient) -> None:
    response = await client.get("/health")
    assert response.status_code == 200
    assert response.json()["database"] == "connected"


async def test_task_roundtrip(client: httpx.AsyncClient, account: Account) -> None:
    created = await client.post(account.tasks_url, json={"title": " a "}, headers=account.headers)
    assert created.status_code == 201, created.text
    assert created.json()["title"] == "a"
    listed = await client.get(account.tasks_url, headers=account.headers)
    assert [t["id"] for t in listed.json()] == [created.json()["id"]]
    toggled = await client.patch(
        f"{account.tasks_url}/{created.json()['id']}/complete", headers=account.headers
    )
    assert toggled.json()["completed"] is True, toggled.text
