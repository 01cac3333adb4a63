"""NLU by a Groq-hosted LLM: the caller's words -> the same `Nlu` as the rules, or a typed error.

The LLM only extracts intent and slots (and may propose a reply); the dialog decides. Its JSON
is validated against `LlmReading`: the intent must be in the vocabulary and the category one of
ours, or the output is invalid; fields we did not ask for are ignored (models add "explication"
and the like, which does no harm). A phone slot goes through `numbers_fr` and is dropped when it
is not a French number: what the caller said is then incomplete, the model did nothing wrong.
Invalid output is asked again once, with the error; then `NluInvalidOutput`. Groq errors are
converted here, at the boundary: `NluTimeout`, or `NluError` with `retryable`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from types import TracebackType
from typing import Annotated, Literal, Self

import groq
import httpx
import msgspec
from groq.types.chat import ChatCompletionMessageParam

from brain.nlu import Nlu
from brain.nlu.normalize import title_name
from brain.nlu.numbers_fr import normalize_phone
from events.kept_connection import KEEPALIVE_S, KeptConnection

log = logging.getLogger(__name__)

DEFAULT_MODEL = "llama-3.3-70b-versatile"
_MAX_TOKENS = 200  # the JSON reading is small; a bound keeps a confused model short
_MAX_NAME_CHARS = 80


class NluError(Exception):
    """The LLM gave no usable reading. `retryable`: the same request may succeed later."""

    def __init__(self, message: str, *, retryable: bool, raw_outputs: tuple[str, ...] = ()):
        super().__init__(message)
        self.retryable = retryable
        self.raw_outputs = raw_outputs  # what the model said, for the decision event


class NluTimeout(NluError):
    def __init__(self, message: str) -> None:
        super().__init__(message, retryable=True)


class NluInvalidOutput(NluError):
    def __init__(self, message: str, raw_outputs: tuple[str, ...]) -> None:
        super().__init__(message, retryable=False, raw_outputs=raw_outputs)


Intent = Literal[
    "affirm", "deny", "internet", "mobile", "repeat", "agent", "goodbye", "inform",
    "out_of_scope", "wait", "unknown",
]  # fmt: skip
Topic = Literal["billing", "contract", "moving", "cancellation", "order", "theft"]


class LlmSlots(msgspec.Struct, kw_only=True):
    name: str | None = None
    phone: str | None = None
    category: Literal["internet", "mobile"] | None = None
    topic: Topic | None = None
    speak: Literal["slower", "louder"] | None = None


class LlmReading(msgspec.Struct, kw_only=True):
    """The JSON the model must return; unknown fields are ignored."""

    intent: Intent
    slots: LlmSlots | None = None
    confidence: Annotated[float, msgspec.Meta(ge=0.0, le=1.0)] = 1.0
    reply: str | None = None


_decoder = msgspec.json.Decoder(LlmReading)


class InvalidReading(ValueError):
    pass


def parse_reading(raw: str) -> Nlu:
    """The model's JSON -> `Nlu`, or `InvalidReading` naming what is wrong."""
    try:
        reading = _decoder.decode(raw)
    except msgspec.DecodeError as e:  # ValidationError is a DecodeError
        raise InvalidReading(str(e)) from e
    slots: dict[str, str] = {}
    s = reading.slots or LlmSlots()
    name = " ".join((s.name or "").split())
    if name and len(name) <= _MAX_NAME_CHARS:
        slots["name"] = title_name(name)
    phone = normalize_phone(s.phone) if s.phone else None
    if phone:
        slots["phone"] = phone
    category = s.category or (reading.intent if reading.intent in ("internet", "mobile") else None)
    if category:
        slots["category"] = category
    if reading.intent == "out_of_scope" and s.topic:
        slots["topic"] = s.topic
    if reading.intent == "repeat" and s.speak:
        slots["speak"] = s.speak
    reply = (reading.reply or "").strip() or None
    return Nlu(intent=reading.intent, slots=slots, confidence=reading.confidence, reply=reply)


SYSTEM_PROMPT = """\
Tu es le module de compréhension d'un serveur vocal de SAV (service après-vente) d'un \
fournisseur d'accès Internet et mobile. On te donne la transcription d'une phrase d'un client \
au téléphone (issue de la reconnaissance vocale : sans ponctuation, nombres en lettres ou en \
chiffres, hésitations), l'étape du dialogue et le type de réponse attendu.

Réponds uniquement par un objet JSON, sans texte autour :
{"intent": "...", "slots": {"name": null, "phone": null, "category": null, "topic": null, \
"speak": null}, "confidence": 0.0, "reply": null}

intent, exactement une de ces valeurs :
- "affirm" : oui, ouais, d'accord, ça marche, c'est bon, exactement, ça fonctionne
- "deny" : non, toujours pas, ça ne marche pas, pas du tout
- "internet" : problème de box, wifi, fibre, ADSL, connexion internet, débit, ligne fixe
- "mobile" : problème de téléphone portable, mobile, 4G/5G, réseau, SMS, forfait, carte SIM
- "repeat" : le client demande de répéter (pardon, répétez, je n'ai pas compris, plus \
lentement, plus fort, je vous entends mal)
- "agent" : le client veut parler à un conseiller, un technicien, un humain
- "goodbye" : au revoir, bonne journée, c'est tout
- "inform" : le client donne son nom et/ou son numéro de téléphone
- "out_of_scope" : une demande qui n'est pas une panne (facture, contrat, abonnement, \
déménagement, résiliation, commande, vol ou perte du téléphone)
- "wait" : le client demande d'attendre sans rien donner d'autre (attendez, un instant, \
je cherche mon numéro)
- "unknown" : rien de tout cela
slots (null si absent) :
- "name" : nom du client tel qu'il le dit, ex. "Pierre Dupont" ; un nom épelé ("D U P O N T", \
"D comme Denis…") reconstitué : "Dupont"
- "phone" : numéro de téléphone en chiffres, 10 chiffres commençant par 0, ex. "0612345678" \
("zéro six douze trente-quatre…" = "0612…", "+33 6…" = "06…") ; un numéro belge ou suisse \
avec son indicatif, ex. "+32471234567", "+41791234567"
- "category" : "internet" ou "mobile" si la phrase parle de l'un des deux
- "topic" : avec "out_of_scope", "billing", "contract", "moving", "cancellation", "order" \
ou "theft"
- "speak" : avec "repeat", "slower" si le client demande de parler plus lentement, "louder" \
s'il demande de parler plus fort ou entend mal
confidence : ta certitude entre 0 et 1.
reply : null, ou une courte phrase en français que le serveur pourrait dire au client.
Quand une réponse oui/non est attendue, "ça marche" est "affirm" et "ça ne marche pas" est "deny".
"""


def _user_message(text: str, expecting: str | None, state: str | None) -> str:
    context = {"etape": state, "reponse_attendue": expecting, "phrase_du_client": text}
    return json.dumps(context, ensure_ascii=False)


class GroqNlu:
    """`understand()` one utterance within `timeout_s` (both attempts included).

    `keepalive_s`: how long an idle connection to Groq is kept for the next request, not the
    SDK pool's 5 s (events/kept_connection.py)."""

    def __init__(
        self, *, api_key: str, model: str = DEFAULT_MODEL, base_url: str | None = None,
        timeout_s: float, keepalive_s: float = KEEPALIVE_S,
    ) -> None:  # fmt: skip
        if timeout_s <= 0:
            raise ValueError("timeout_s must be positive")
        self.model = model
        self.timeout_s = timeout_s
        self.connection = KeptConnection(keepalive_s)
        # Retries are ours (invalid output) or the dialog's (errors): the SDK makes none.
        self._client = groq.AsyncGroq(
            api_key=api_key,
            base_url=base_url,
            timeout=timeout_s,
            max_retries=0,
            http_client=groq.DefaultAsyncHttpxClient(
                limits=httpx.Limits(
                    max_connections=100, max_keepalive_connections=20, keepalive_expiry=keepalive_s
                )
            ),
        )

    async def aclose(self) -> None:
        await self._client.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def warm(self) -> None:
        """Open a connection now if none is kept: a call starts with the welcome (about 2 s),
        so the handshakes are done before the caller's first line rather than on it."""
        await self.connection.warm(self._client.models.list, self.timeout_s)

    async def understand(
        self, text: str, expecting: str | None, state: str | None, *, call_id: str = "-"
    ) -> tuple[Nlu, str, float]:
        """(reading, raw model output, latency in ms); raises `NluError` and its subclasses."""
        started = time.perf_counter()
        messages: list[ChatCompletionMessageParam] = [
            {"role": "system", "content": SYSTEM_PROMPT},
            {"role": "user", "content": _user_message(text, expecting, state)},
        ]
        raws: list[str] = []
        try:
            async with asyncio.timeout(self.timeout_s):
                for attempt in (1, 2):
                    raw = await self._complete(messages)
                    raws.append(raw)
                    try:
                        nlu = parse_reading(raw)
                    except InvalidReading as e:
                        log.warning("[%s] LLM output invalid (attempt %d): %s", call_id, attempt, e)
                        messages = [*messages, *_correction(raw, e)]
                        continue
                    return nlu, raw, (time.perf_counter() - started) * 1000
        except TimeoutError as e:
            raise NluTimeout(f"no LLM reading within {self.timeout_s} s") from e
        raise NluInvalidOutput("LLM output invalid twice", tuple(raws))

    async def _complete(self, messages: list[ChatCompletionMessageParam]) -> str:
        self.connection.used()
        try:
            response = await self._client.chat.completions.create(
                model=self.model,
                messages=messages,
                temperature=0,
                response_format={"type": "json_object"},
                max_tokens=_MAX_TOKENS,
                timeout=self.timeout_s,
            )
        except groq.APITimeoutError as e:
            raise NluTimeout(f"Groq timed out after {self.timeout_s} s") from e
        except groq.APIConnectionError as e:
            raise NluError(f"Groq unreachable: {e}", retryable=True) from e
        except groq.APIStatusError as e:
            retryable = e.status_code in (408, 409, 429) or e.status_code >= 500
            raise NluError(f"Groq HTTP {e.status_code}", retryable=retryable) from e
        except groq.APIError as e:
            raise NluError(f"Groq error: {e}", retryable=False) from e
        return (response.choices[0].message.content or "") if response.choices else ""


def _correction(raw: str, error: Exception) -> list[ChatCompletionMessageParam]:
    return [
        {"role": "assistant", "content": raw},
        {
            "role": "user",
            "content": f"Réponse invalide ({error}). Réponds uniquement par l'objet JSON demandé.",
        },
    ]
