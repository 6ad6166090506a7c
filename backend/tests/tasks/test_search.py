"""Search (issue 17): q= over title and description, ranked, with the last word as a prefix,
accents folded, in any language's words; never another user's tasks or the trash."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.fixtures.accounts import Account
from tests.fixtures.tasks import create_task

pytestmark = pytest.mark.usefixtures("clean_tasks")

CORPUS = {
    "groceries": ("Buy groceries", None),
    "party": ("Groceries for the party", "groceries: chips, groceries: juice"),
    "grandma": ("Call grandma", "about the party"),
    "creme": ("Crème brûlée recipe", None),
    "report": ("Q3 report", "weekly report draft"),
    "final": ("Final report", "weekly numbers, not a draft"),
    "german": ("Straße fegen", "Müll rausbringen"),
    "greek": ("Αγορά ψωμιού", None),
}


async def search(client: httpx.AsyncClient, account: Account, q: str, **params: str) -> list[str]:
    response = await client.get(
        account.tasks_url, params={"q": q, **params}, headers=account.headers
    )
    assert response.status_code == 200, response.text
    body: list[dict[str, Any]] = response.json()
    return [task["title"] for task in body]


@pytest.fixture
async def corpus(client: httpx.AsyncClient, account: Account) -> dict[str, str]:
    ids = {}
    for name, (title, description) in CORPUS.items():
        ids[name] = (await create_task(client, account, title, description=description))["id"]
    return ids


@pytest.mark.usefixtures("corpus")
@pytest.mark.parametrize(
    ("q", "found"),
    [
        # The last word is a prefix while it is typed; a word before it is whole.
        ("gro", {"Buy groceries", "Groceries for the party"}),
        ("groceries", {"Buy groceries", "Groceries for the party"}),
        ("gro ", set()),
        ("party gro", {"Groceries for the party"}),
        # Accents folded both ways, case ignored.
        ("creme", {"Crème brûlée recipe"}),
        ("BRÛLÉE", {"Crème brûlée recipe"}),
        ("brul", {"Crème brûlée recipe"}),
        ("müll", {"Straße fegen"}),
        ("strasse", set()),  # no stemming or transliteration: ß is not ss
        ("αγορ", {"Αγορά ψωμιού"}),  # noqa: RUF001 (any script's words; the accent folded)
        # websearch syntax: a phrase, an exclusion, or.
        ('"weekly report"', {"Q3 report"}),
        ("report -draft", set()),
        ("report -grandma", {"Q3 report", "Final report"}),
        ("grandma or creme", {"Call grandma", "Crème brûlée recipe"}),
        ("grandma OR cre", {"Call grandma", "Crème brûlée recipe"}),
        ("!!!", set()),
    ],
)
async def test_search_finds_what_a_user_typing_expects(
    client: httpx.AsyncClient, account: Account, q: str, found: set[str]
) -> None:
    assert set(await search(client, account, q)) == found


async def test_results_are_ranked_by_relevance(
    client: httpx.AsyncClient, account: Account, corpus: dict[str, str]
) -> None:
    # "groceries" three times and in the title ranks above once.
    assert await search(client, account, "groceries") == [
        "Groceries for the party",
        "Buy groceries",
    ]
    # The title's words, near each other, rank the weekly report above the final one.
    assert (await search(client, account, "weekly report"))[0] == "Q3 report"


async def test_relevance_pages_through_every_match_once(
    client: httpx.AsyncClient, account: Account
) -> None:
    for number in range(7):
        await create_task(client, account, "milk " * (number % 3 + 1) + f"#{number}")
    titles: list[str] = []
    url: str | None = account.tasks_url
    params: dict[str, str] | None = {"q": "milk", "limit": "2"}
    while url is not None:
        response = await client.get(url, params=params, headers=account.headers)
        titles += [task["title"] for task in response.json()]
        link = response.headers.get("Link")
        url, params = (link[1 : link.index(">")], None) if link else (None, None)
    assert len(titles) == len(set(titles)) == 7
    counts = [title.count("milk") for title in titles]
    assert counts == sorted(counts, reverse=True)


async def test_search_combines_with_filters_and_other_orders(
    client: httpx.AsyncClient, account: Account, corpus: dict[str, str]
) -> None:
    await client.patch(
        f"{account.tasks_url}/{corpus['groceries']}/complete", headers=account.headers
    )
    assert await search(client, account, "gro", completed="false") == ["Groceries for the party"]
    by_age = await search(client, account, "report", sort="created")
    assert by_age == ["Q3 report", "Final report"]


async def test_search_never_finds_another_users_tasks_or_the_trash(
    client: httpx.AsyncClient, account: Account, other_account: Account
) -> None:
    await create_task(client, other_account, "secret groceries")
    trashed = await create_task(client, account, "trashed groceries")
    await client.delete(f"{account.tasks_url}/{trashed['id']}", headers=account.headers)
    assert await search(client, account, "groceries") == []
    assert await search(client, account, "secret") == []
    assert await search(client, other_account, "groceries") == ["secret groceries"]


async def test_an_edited_title_is_found_by_its_new_words_only(
    client: httpx.AsyncClient, account: Account
) -> None:
    task = await create_task(client, account, "paint the fence")
    await client.patch(
        f"{account.tasks_url}/{task['id']}", json={"title": "fix the gate"}, headers=account.headers
    )
    assert await search(client, account, "fence") == []
    assert await search(client, account, "gate") == ["fix the gate"]
