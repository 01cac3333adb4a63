"""The brain with the Groq NLU, through the real groq SDK against a loopback chat server:
a good answer is used, a slow one is preceded by the hold phrase, a failed or invalid one is
replaced by the rule-based reading for that turn. The caller never waits in silence."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from dataclasses import replace

import pytest
from loopback.openai_chat import ChatServer
from test_brain import Call, running_brain

from brain.config import BrainConfig
from brain.worker import BrainWorker
from events import schemas
from events.bus import Bus
from voicebot.servers import NatsServer

pytestmark = [pytest.mark.integration, pytest.mark.timeout(45)]


def reading(intent: str, **slots: str) -> str:
    return json.dumps({"intent": intent, "slots": slots})


@pytest.fixture
async def chat() -> AsyncIterator[ChatServer]:
    async with ChatServer() as server:
        yield server


@pytest.fixture
async def brain(nats_server: NatsServer, bus: Bus, chat: ChatServer) -> AsyncIterator[BrainWorker]:
    config = replace(
        BrainConfig.from_env(),
        nats_url=nats_server.url,
        database_url=None,
        nlu_provider="groq",
        groq_api_key="test-key",
        groq_base_url=chat.base_url,
        llm_timeout_s=1.0,
        hold_after_s=0.3,
        no_input_s=30.0,
    )
    async with running_brain(config, nats_server.url) as worker:
        yield worker


async def said(call: Call, phrase: str, within_s: float = 10.0) -> None:
    """Wait for a phrase rather than a count of says: under load a hold phrase may slip in."""
    deadline = time.monotonic() + within_s
    while phrase not in call.spoken():
        assert time.monotonic() < deadline, call.spoken()
        await asyncio.sleep(0.01)


def without_hold(call: Call) -> list[str]:
    return [p for p in call.spoken() if p != "hold"]


async def decision_for(call: Call, text: str, within_s: float = 10.0) -> schemas.Decision:
    """The decision on `text`: it is published after the says it caused, so wait for it."""
    deadline = time.monotonic() + within_s
    while True:
        found = [d for d in call.decisions if d.text == text]
        if found:
            return found[0]
        assert time.monotonic() < deadline, [d.text for d in call.decisions]
        await asyncio.sleep(0.01)


async def test_llm_reading_drives_the_dialog(
    brain: BrainWorker, bus: Bus, chat: ChatServer
) -> None:
    call = Call(bus)
    await call.start()
    await call.wait_says(1)
    # The LLM understands what the rules would not: a roundabout way to describe the box.
    chat.reply(reading("internet", category="internet"))
    await call.speak("le petit boîtier blanc clignote")
    await said(call, "ask_identity")
    assert without_hold(call) == ["welcome", "ask_identity"]
    decision = await decision_for(call, "le petit boîtier blanc clignote")
    assert (decision.nlu_source, decision.intent) == ("llm", "internet")
    assert decision.llm_raw is not None and "internet" in decision.llm_raw
    assert decision.llm_ms is not None


async def test_slow_llm_gets_the_hold_phrase_first(
    brain: BrainWorker, bus: Bus, chat: ChatServer
) -> None:
    call = Call(bus)
    await call.start()
    await call.wait_says(1)
    chat.reply(reading("internet", category="internet"), delay_s=0.7)  # > hold_after_s, < timeout
    await call.speak("problème de connexion")
    await said(call, "ask_identity")
    assert call.spoken() == ["welcome", "hold", "ask_identity"]
    assert (await decision_for(call, "problème de connexion")).nlu_source == "llm"


async def test_llm_timeout_plays_hold_then_the_rules_decide(
    brain: BrainWorker, bus: Bus, chat: ChatServer
) -> None:
    call = Call(bus)
    await call.start()
    await call.wait_says(1)
    chat.hang()
    await call.speak("Bonjour, j'ai un problème avec ma connexion.")
    await said(call, "ask_identity")
    assert call.spoken() == ["welcome", "hold", "ask_identity"]
    decision = await decision_for(call, "Bonjour, j'ai un problème avec ma connexion.")
    assert (decision.nlu_source, decision.intent) == ("llm_fallback", "internet")


async def test_invalid_llm_output_twice_falls_back_to_the_rules(
    brain: BrainWorker, bus: Bus, chat: ChatServer
) -> None:
    call = Call(bus)
    await call.start()
    await call.wait_says(1)
    chat.reply("je pense que c'est internet")
    chat.reply('{"intent": "pizza"}')
    await call.speak("ma box ne marche plus")
    await said(call, "ask_identity")
    assert without_hold(call) == ["welcome", "ask_identity"]
    decision = await decision_for(call, "ma box ne marche plus")
    assert (decision.nlu_source, decision.intent) == ("llm_fallback", "internet")
    assert len(chat.requests) == 2
