"""msgraph-sdk (Kiota) against the sim over https: users, users delta, mail messages delta
and calendarView delta in the `delta()` function form the SDK's URL templates send, with
paging (`@odata.nextLink`) and delta links, query options, and ODataError."""

import asyncio
import ssl

import httpx
import msal
from kiota_abstractions.authentication import (
    AccessTokenProvider, AllowedHostsValidator, BaseBearerTokenAuthenticationProvider,
)
from kiota_abstractions.base_request_configuration import RequestConfiguration
from msgraph import GraphRequestAdapter, GraphServiceClient
from msgraph.generated.models.o_data_errors.o_data_error import ODataError
from msgraph.generated.users.delta.delta_request_builder import (
    DeltaRequestBuilder as UsersDelta,
)
from msgraph.generated.users.item.calendar_view.delta.delta_request_builder import (
    DeltaRequestBuilder as CalendarDelta,
)
from msgraph.generated.users.item.mail_folders.item.messages.delta.delta_request_builder import (
    DeltaRequestBuilder as MailDelta,
)
from msgraph.generated.users.users_request_builder import UsersRequestBuilder
from msgraph_core import GraphClientFactory

from common import BASE, CA, MS_CLIENT, MS_SECRET, MS_TENANT, case, check, control, sim_users

GRAPH = f"{BASE}/graph/v1.0"


class MsalTokens(AccessTokenProvider):
    """App-only tokens from msal (client credentials against the sim's Entra)."""

    def __init__(self):
        self.app = msal.ConfidentialClientApplication(
            MS_CLIENT, client_credential=MS_SECRET,
            authority=f"{BASE}/microsoft/{MS_TENANT}",
            validate_authority=False, instance_discovery=False, verify=CA,
        )

    async def get_authorization_token(self, uri, additional_authentication_context={}):
        result = self.app.acquire_token_for_client(["https://graph.microsoft.com/.default"])
        check("access_token" in result, result)
        return result["access_token"]

    def get_allowed_hosts_validator(self):
        return AllowedHostsValidator([])


def graph_client():
    http = httpx.AsyncClient(
        verify=ssl.create_default_context(cafile=CA), base_url=GRAPH, timeout=30
    )
    http = GraphClientFactory.create_with_default_middleware(client=http)
    adapter = GraphRequestAdapter(BaseBearerTokenAuthenticationProvider(MsalTokens()), client=http)
    adapter.base_url = GRAPH
    return GraphServiceClient(request_adapter=adapter)


def oid(email):
    return next(u["id"] for u in sim_users() if u["email"] == email)


def removed(item):
    return "@removed" in (item.additional_data or {})


async def round_of(first, builder_with_url, config=None):
    """Follows one delta round: (items, deltaLink, pages)."""
    items, pages = [], 0
    page = await first.get(request_configuration=config)
    while True:
        pages += 1
        items += page.value or []
        if page.odata_next_link:
            check(page.odata_delta_link is None, "a page has one link")
            page = await builder_with_url(page.odata_next_link).get(request_configuration=config)
            continue
        check(page.odata_delta_link, "the last page has a deltaLink")
        return items, page.odata_delta_link, pages


def prefer(size, query=None):
    config = RequestConfiguration(query_parameters=query)
    config.headers.add("Prefer", f"odata.maxpagesize={size}")
    return config


def run(coroutine):
    return lambda: asyncio.run(coroutine())


async def _users():
    graph = graph_client()
    query = UsersRequestBuilder.UsersRequestBuilderGetQueryParameters(
        select=["id", "userPrincipalName", "accountEnabled", "userType"], top=1,
    )
    page = await graph.users.get(request_configuration=RequestConfiguration(query_parameters=query))
    users = list(page.value)
    while page.odata_next_link:
        page = await graph.users.with_url(page.odata_next_link).get()
        users += page.value
    check(sorted(u.user_principal_name for u in users)
          == ["alan@contoso.example", "katherine@contoso.example"], users)
    check(all(u.account_enabled is True and u.user_type == "Member" for u in users), users)
    delta_query = UsersDelta.DeltaRequestBuilderGetQueryParameters(select=["id", "userPrincipalName"])
    everyone, link, pages = await round_of(
        graph.users.delta, graph.users.delta.with_url, prefer(1, delta_query)
    )
    check(len(everyone) == 2 and pages == 2, (everyone, pages))
    nothing, _, _ = await round_of(graph.users.delta.with_url(link), graph.users.delta.with_url)
    check(nothing == [], nothing)


async def _mail_delta():
    graph = graph_client()
    alan = oid("alan@contoso.example")
    delta = graph.users.by_user_id(alan).mail_folders.by_mail_folder_id("inbox").messages.delta
    messages, link, pages = await round_of(delta, delta.with_url, prefer(5))
    check(len(messages) == 12 and pages == 3, (len(messages), pages))
    check(all(m.subject and m.received_date_time for m in messages), "full messages")
    gone = messages[0].id
    control("mail", {"tenant": "contoso", "user": "alan@contoso.example", "add": 2,
                     "remove": [gone]})
    changes, link, _ = await round_of(delta.with_url(link), delta.with_url)
    check(len(changes) == 3, changes)
    check([c.id for c in changes if removed(c)] == [gone], changes)
    # $filter receivedDateTime ge (the only filter message delta takes) stays in the links.
    received = sorted(m.received_date_time for m in messages)
    since = received[8].strftime("%Y-%m-%dT%H:%M:%SZ")
    query = MailDelta.DeltaRequestBuilderGetQueryParameters(filter=f"receivedDateTime ge {since}")
    newer, _, pages = await round_of(delta, delta.with_url, prefer(2, query))
    check(pages >= 2 and all(m.received_date_time >= received[8] for m in newer if not removed(m)),
          (pages, newer))
    try:
        bad = MailDelta.DeltaRequestBuilderGetQueryParameters(filter="subject eq 'x'")
        await delta.get(request_configuration=RequestConfiguration(query_parameters=bad))
        check(False, "an unsupported $filter is a 400")
    except ODataError as error:
        check(error.response_status_code == 400, error)
        check(error.error.code == "ErrorInvalidUrlQuery", error.error.code)
    # An expired delta link: 410 SyncStateNotFound.
    control("expire", {"tenant": "contoso", "user": "alan@contoso.example", "what": "cursors"})
    try:
        await delta.with_url(link).get()
        check(False, "an expired delta link is a 410")
    except ODataError as error:
        check(error.response_status_code == 410, error)
        check(error.error.code.lower() == "syncstatenotfound", error.error.code)


async def _calendar_delta():
    graph = graph_client()
    alan = oid("alan@contoso.example")
    delta = graph.users.by_user_id(alan).calendar_view.delta
    query = CalendarDelta.DeltaRequestBuilderGetQueryParameters(
        start_date_time="2000-01-01T00:00:00Z", end_date_time="2100-01-01T00:00:00Z",
    )
    events, link, pages = await round_of(delta, delta.with_url, prefer(4, query))
    check(len(events) == 6 and pages == 2, (len(events), pages))
    check(all(e.start.time_zone == "UTC" and e.subject for e in events), events)
    control("events", {"tenant": "contoso", "user": "alan@contoso.example", "add": 1,
                       "remove": [events[0].id]})
    changes, _, _ = await round_of(delta.with_url(link), delta.with_url)
    check(len(changes) == 2 and sum(removed(c) for c in changes) == 1, changes)


async def _errors():
    graph = graph_client()
    try:
        await graph.users.by_user_id("nobody@contoso.example").mail_folders.by_mail_folder_id(
            "inbox").messages.delta.get()
        check(False, "an unknown user is a 404")
    except ODataError as error:
        check(error.response_status_code == 404, error)
        check(error.error.code == "ErrorInvalidUser", error.error.code)
        check(error.error.inner_error.request_id, "innerError carries the request id")
    try:
        await graph.users.by_user_id(oid("alan@contoso.example")).contacts.get()
        check(False, "a path the sim does not serve answers Graph's 400")
    except ODataError as error:
        check(error.response_status_code == 400 and error.error.code == "BadRequest", error)
        check(error.error.message == "Resource not found for the segment 'contacts'.",
              error.error.message)


users = run(_users)
users.case_name = "users list with $select/$top paging, and users delta() rounds"
mail_delta = run(_mail_delta)
mail_delta.case_name = "messages delta(): paging, changes with @removed, $filter in links, 400, 410"
calendar_delta = run(_calendar_delta)
calendar_delta.case_name = "calendarView delta(): window, paging, changes"
errors = run(_errors)
errors.case_name = "ODataError: 404 ErrorInvalidUser with innerError, 400 for an unknown segment"

CASES = [users, mail_delta, calendar_delta, errors]
