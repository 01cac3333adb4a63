"""The Groq NLU through the real `groq` SDK against a loopback chat-completions server."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import openai
import pytest
from loopback.openai_chat import ChatServer

from brain.nlu import Nlu
from brain.providers.groq import (
    DEFAULT_MODEL,
    GroqNlu,
    InvalidReading,
    NluError,
    NluInvalidOutput,
    NluTimeout,
    parse_reading,
)

PIERRE = json.dumps(
    {
        "intent": "inform",
        "slots": {"name": "pierre dupont", "phone": "06 12 34 56 78", "category": None},
        "confidence": 0.9,
        "reply": None,
    }
)
AFFIRM = '{"intent": "affirm", "slots": {}, "confidence": 1.0, "reply": "Très bien."}'


@pytest.fixture
async def server() -> AsyncIterator[ChatServer]:
    async with ChatServer() as s:
        yield s


def nlu_for(server: ChatServer, timeout_s: float = 3.0) -> GroqNlu:
    return GroqNlu(api_key="test-key", base_url=server.base_url, timeout_s=timeout_s)


@pytest.mark.slow
@pytest.mark.timeout(20)
async def test_a_callers_next_line_reuses_the_connection_to_groq() -> None:
    """Lines come 5 to 8 s apart in a call: past the SDK pool's 5 s, every request paid a new
    connection (TCP and TLS handshakes to the service, here `connect_s`)."""

    async def two_lines(keepalive_s: float | None) -> tuple[int, list[float]]:
        async with ChatServer(keep_alive=True, connect_s=0.3) as server:
            server.reply(AFFIRM)
            server.reply(AFFIRM)
            kw = {} if keepalive_s is None else {"keepalive_s": keepalive_s}
            async with GroqNlu(api_key="k", base_url=server.base_url, timeout_s=3.0, **kw) as llm:
                first = await llm.understand("oui", "yes_no", "VERIFICATION")
                await asyncio.sleep(6.0)  # the bot's question, then the caller's answer
                second = await llm.understand("oui", "yes_no", "VERIFICATION")
            return server.connections, [first[2], second[2]]

    (ours, ms), (sdk_pool, sdk_ms) = await asyncio.gather(two_lines(None), two_lines(5.0))
    assert ours == 1 and ms[1] < 250, ms  # the second line pays no connection
    assert sdk_pool == 2 and sdk_ms[1] >= 300, sdk_ms  # with the SDK's 5 s it did


@pytest.mark.timeout(10)
async def test_warm_opens_the_connection_before_the_first_line_and_only_when_none_is_kept() -> None:
    async with ChatServer(keep_alive=True, connect_s=0.3) as server:
        server.reply(AFFIRM)
        async with GroqNlu(api_key="k", base_url=server.base_url, timeout_s=3.0) as llm:
            await llm.warm()  # the brain's, at the start of a call: the welcome covers it
            assert (server.connections, server.warmups) == (1, 1)
            _, _, ms = await llm.understand("oui", "yes_no", "VERIFICATION")
            await llm.warm()  # a connection is kept: nothing to do
        assert ms < 250  # the caller's first line paid no connection
        assert (server.connections, server.warmups, len(server.requests)) == (1, 1, 1)


@pytest.mark.timeout(10)
async def test_valid_json_gives_the_reading_raw_output_and_latency(server: ChatServer) -> None:
    server.reply(PIERRE)
    async with nlu_for(server) as llm:
        nlu, raw, ms = await llm.understand(
            "Pierre Dupont, 06 12 34 56 78.", "identity", "IDENTIFICATION"
        )
    assert nlu == Nlu(
        intent="inform", slots={"name": "Pierre Dupont", "phone": "0612345678"}, confidence=0.9
    )
    assert raw == PIERRE
    assert ms > 0
    [request] = server.requests
    assert request.path == "/openai/v1/chat/completions"
    assert request.headers["authorization"] == "Bearer test-key"
    body = request.body
    assert body["model"] == DEFAULT_MODEL == "llama-3.3-70b-versatile"
    assert body["temperature"] == 0
    assert body["response_format"] == {"type": "json_object"}
    system, user = body["messages"]
    assert system["role"] == "system" and "JSON" in system["content"]
    context = json.loads(user["content"])
    assert context == {
        "etape": "IDENTIFICATION",
        "reponse_attendue": "identity",
        "phrase_du_client": "Pierre Dupont, 06 12 34 56 78.",
    }


@pytest.mark.timeout(10)
async def test_invalid_json_is_asked_again_once_with_the_error(server: ChatServer) -> None:
    server.reply("Bien sûr ! Voici le JSON : {intent: affirm")
    server.reply(AFFIRM)
    async with nlu_for(server) as llm:
        nlu, raw, _ = await llm.understand("oui ça marche", "yes_no", "VERIFICATION")
    assert (nlu.intent, nlu.reply, raw) == ("affirm", "Très bien.", AFFIRM)
    first, second = server.requests
    assert len(second.messages) == len(first.messages) + 2
    bad, correction = second.messages[-2:]
    assert bad == {"role": "assistant", "content": "Bien sûr ! Voici le JSON : {intent: affirm"}
    assert correction["role"] == "user" and "invalide" in correction["content"]


@pytest.mark.timeout(10)
async def test_invalid_twice_raises_invalid_output_with_both_raws(server: ChatServer) -> None:
    server.reply("pas du JSON")
    server.reply('{"intent": "bonjour"}')  # valid JSON, intent outside the vocabulary
    server.reply(AFFIRM)  # never asked: one retry only
    async with nlu_for(server) as llm:
        with pytest.raises(NluInvalidOutput) as caught:
            await llm.understand("bonjour", "problem", "WELCOME")
    assert caught.value.raw_outputs == ("pas du JSON", '{"intent": "bonjour"}')
    assert caught.value.retryable is False
    assert len(server.requests) == 2
    assert server.pending == 1


@pytest.mark.timeout(10)
async def test_timeout_raises_nlu_timeout_within_the_bound(server: ChatServer) -> None:
    server.hang()
    loop = asyncio.get_running_loop()
    async with nlu_for(server, timeout_s=0.5) as llm:
        started = loop.time()
        with pytest.raises(NluTimeout) as caught:
            await llm.understand("allô", "yes_no", "VERIFICATION")
        elapsed = loop.time() - started
    assert caught.value.retryable is True
    # It waited for the timeout, and not much longer (generous slack for a loaded machine).
    assert 0.45 <= elapsed < 1.5
    assert len(server.requests) == 1


@pytest.mark.timeout(10)
async def test_the_bound_covers_the_retry_too(server: ChatServer) -> None:
    server.reply("pas du JSON", delay_s=0.4)
    server.reply(AFFIRM, delay_s=0.6)
    async with nlu_for(server, timeout_s=0.7) as llm:
        with pytest.raises(NluTimeout):
            await llm.understand("oui", "yes_no", "VERIFICATION")
    assert len(server.requests) == 2


@pytest.mark.timeout(10)
async def test_slow_response_under_the_timeout_succeeds(server: ChatServer) -> None:
    server.reply(AFFIRM, delay_s=0.3)
    async with nlu_for(server, timeout_s=3.0) as llm:
        nlu, _, ms = await llm.understand("oui", "yes_no", "VERIFICATION")
    assert nlu.intent == "affirm"
    assert ms >= 300


@pytest.mark.timeout(10)
@pytest.mark.parametrize(
    ("status", "retryable"), [(500, True), (503, True), (429, True), (400, False)]
)
async def test_http_errors_raise_nlu_error(
    server: ChatServer, status: int, retryable: bool
) -> None:
    server.error(status)
    async with nlu_for(server) as llm:
        with pytest.raises(NluError) as caught:
            await llm.understand("oui", "yes_no", "VERIFICATION")
    assert type(caught.value) is NluError
    assert caught.value.retryable is retryable
    assert str(status) in str(caught.value)
    assert len(server.requests) == 1  # the SDK does not retry behind our back


@pytest.mark.timeout(10)
async def test_connection_refused_is_a_retryable_error() -> None:
    async with ChatServer() as closed:
        url = closed.base_url
    async with GroqNlu(api_key="k", base_url=url, timeout_s=2.0) as llm:
        with pytest.raises(NluError) as caught:
            await llm.understand("oui", None, None)
    assert type(caught.value) is NluError
    assert caught.value.retryable is True


@pytest.mark.timeout(10)
async def test_the_loopback_also_serves_the_openai_sdk_path(server: ChatServer) -> None:
    server.reply("bonjour")
    client = openai.AsyncOpenAI(
        api_key="k", base_url=f"{server.base_url}/v1", timeout=3.0, max_retries=0
    )
    async with client:
        response = await client.chat.completions.create(
            model="m", messages=[{"role": "user", "content": "salut"}]
        )
    assert response.choices[0].message.content == "bonjour"
    assert server.requests[0].path == "/v1/chat/completions"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ('{"intent": "internet"}', Nlu(intent="internet", slots={"category": "internet"})),
        (
            '{"intent": "inform", "slots": {"phone": "zéro six douze trente-quatre '
            'cinquante-six soixante-dix-huit"}}',
            Nlu(intent="inform", slots={"phone": "0612345678"}),
        ),
        ('{"intent": "inform", "slots": {"phone": "+33 6 12 34 56 78"}}',
         Nlu(intent="inform", slots={"phone": "0612345678"})),
        # A number that is not a French phone number is dropped, not an invalid output.
        ('{"intent": "inform", "slots": {"phone": "12 34"}}', Nlu(intent="inform")),
        ('{"intent": "affirm", "explication": "le client dit oui", "slots": null}',
         Nlu(intent="affirm")),
        ('{"intent": "deny", "confidence": 0.4, "reply": "  "}',
         Nlu(intent="deny", confidence=0.4)),
    ],
)  # fmt: skip
def test_parse_reading(raw: str, expected: Nlu) -> None:
    assert parse_reading(raw) == expected


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "oui",
        "[]",
        '{"slots": {}}',
        '{"intent": "AFFIRM"}',
        '{"intent": "affirm", "confidence": 2}',
        '{"intent": "internet", "slots": {"category": "fixe"}}',
    ],
)
def test_parse_reading_rejects(raw: str) -> None:
    with pytest.raises(InvalidReading):
        parse_reading(raw)
