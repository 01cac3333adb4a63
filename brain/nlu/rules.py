"""The offline French NLU: phrase lists, a phone and name extractor, and an order of precedence.

Deterministic and pure. Phrases are matched on the folded text (lower case, no accents, no
punctuation) at word boundaries, so ASR output without punctuation reads the same as typed text.
The dialog's `expecting` hint decides between readings of one utterance: in a yes/no question
"non, la box ne marche toujours pas" is a `deny`; as an answer to "comment puis-je vous aider"
"ma box ne marche pas" is `internet`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import msgspec

from brain.nlu.names_fr import FIRST_NAMES
from brain.nlu.normalize import Word, fold, join_spelled, title_name, words
from brain.nlu.numbers_fr import FILLERS, PhoneMatch, find_phone, is_number_word

INTENTS = (
    "affirm", "deny", "internet", "mobile", "repeat", "agent", "goodbye", "inform",
    "out_of_scope", "wait", "unknown",
)  # fmt: skip
CATEGORIES = ("internet", "mobile")
# The `topic` slot of an `out_of_scope` request: what the hotline does not handle.
TOPICS = ("billing", "contract", "moving", "cancellation", "order", "theft")


class Nlu(msgspec.Struct, frozen=True, kw_only=True):
    """One reading of a caller utterance, in the dialog vocabulary of DESIGN.md."""

    intent: str  # one of INTENTS
    # name ("Pierre Dupont"), phone ("0612345678", "+32471234567"), category ("internet" |
    # "mobile"); with `out_of_scope`, topic (one of TOPICS); with `repeat`, speak ("slower" |
    # "louder") when the caller asked for it
    slots: dict[str, str] = {}
    confidence: float = 1.0
    reply: str | None = None  # a phrasing an LLM may propose; the rules leave it None


AGENT = (
    "conseiller", "conseillere", "technicien", "technicienne", "humain", "humaine",
    "vraie personne", "vrai personne", "personne reelle", "une personne", "un agent",
    "operateur", "operatrice", "parler a quelqu un", "avoir quelqu un", "passer quelqu un",
    "pas un robot", "pas a un robot", "pas une machine",
)  # fmt: skip
# Unambiguous requests to hear the prompt again.
REPEAT = (
    "repetez", "repeter", "repete", "redites", "redire", "je n ai pas compris",
    "j ai pas compris", "pas compris", "pas bien compris", "pas entendu", "pas bien entendu",
    "entendu ce que", "encore une fois", "plait il", "vous avez dit quoi", "vous dites",
)  # fmt: skip
# Requests to repeat that also say how: the caller cannot follow or hear the bot.
SLOWER = (
    "plus lentement", "moins vite", "plus doucement", "moins rapidement", "trop vite",
    "parlez lentement", "parler lentement", "lentement s il vous plait", "ralentissez",
    "pouvez ralentir", "pourriez ralentir",
)  # fmt: skip
LOUDER = (
    "plus fort", "parlez fort", "vous entends pas", "vous entends mal", "vous entend pas",
    "vous entend mal", "vous entends tres mal", "vous entends pas bien", "ca gresille",
)  # fmt: skip
# About the bot, or about the caller's own calls: see `_speak`.
LOUDER_WEAK = (
    "n entends pas", "j entends pas", "entends pas bien", "entends mal", "entends rien",
    "entends tres mal", "entend mal", "entend pas", "entend rien",
)  # fmt: skip
# The caller asks for time ("attendez, je cherche mon numéro"), and gives nothing else yet.
# Not "un moment", "deux minutes", "je regarde": "depuis un moment", "ça coupe toutes les deux
# minutes", "quand je regarde une vidéo" describe a breakdown.
WAIT = (
    "attendez", "attends", "un instant", "une seconde", "deux secondes", "une petite seconde",
    "1 seconde", "2 secondes", "1 instant",  # as Whisper writes them
    "patientez", "ne quittez pas", "bougez pas", "je cherche", "je le cherche", "je la cherche",
    "je vais chercher", "laissez moi chercher", "laissez moi regarder", "je reviens",
    "pas sous la main",
)  # fmt: skip
_WAIT_WORDS = 12  # a longer line says more than "wait"
# Only a request to repeat when the utterance says nothing else ("pardon, oui" is a yes).
REPEAT_ALONE = ("pardon", "comment", "quoi", "hein", "excusez moi", "excuse moi")
GOODBYE = (
    "au revoir", "bonne journee", "bonne soiree", "bonne fin de journee", "bonne nuit",
    "a bientot", "rien d autre", "je raccroche", "bye", "adieu",
)  # fmt: skip
# Goodbyes only where the line ends (or thanks): "c'est tout le temps" is a symptom.
_GOODBYE_LAST = re.compile(r" (c est|ce sera|ca sera) tout( merci)? $")
# ... and in a short line: at the end of a long one ("Il y a un peu d'éposé, il y a pas de
# casque là, c'est tout." for a number said under noise) it is no reason to hang up.
_GOODBYE_WORDS = 6
DENY = (
    "non", "nan", "nope", "toujours pas", "pas du tout", "pas vraiment", "pas encore",
    "absolument pas", "pas d accord", "negatif", "rien n a change", "rien a change",
    "n a rien change", "a rien change", "toujours le meme probleme", "toujours pareil",
    "c est pareil", "pareil", "pas pu", "non plus", "aucun changement", "rien du tout",
    "ca ne va pas", "ca va pas", "toujours en panne", "toujours le meme souci",
    "deja essaye", "deja teste", "deja fait ca", "j ai deja fait", "rien donne",
    "n a rien donne", "sans succes", "change rien", "toujours rien",
)  # fmt: skip
# A verb of "it works" under negation: "ça (ne) marche (toujours) pas", "ça a pas fonctionné".
_NEGATED_WORKS = re.compile(
    r"\b(marche|marchent|fonctionne|fonctionnent|marchait|fonctionnait|remarche|refonctionne"
    r"|va|passe)\s+(toujours\s+|vraiment\s+|encore\s+|du\s+tout\s+)?"
    r"(pas|plus|toujours\s+pas)\b"
    r"|\b(n\s+)?a\s+(pas|rien|toujours\s+pas)\s+(marche|fonctionne|change|regle|resolu)\b"
    r"|\bpas\s+(bon|ok|mieux|regle|resolu|repare|fonctionnel)\b"
)
AFFIRM = (
    "oui", "ouais", "ouai", "ouaip", "ouep", "yes", "ok", "okay", "okey", "d accord", "dac",
    "daccord", "ca marche", "ca fonctionne", "c est bon", "exactement", "tout a fait",
    "parfait", "parfaitement", "absolument", "bien sur", "effectivement", "c est ca", "voila",
    "entendu", "ca y est", "tres bien", "super", "genial", "nickel", "impeccable", "ca remarche",
    "ca refonctionne", "ca va mieux", "c est regle", "c est resolu", "affirmatif", "c est exact",
    "exact", "pas de souci", "pas de probleme", "sans probleme", "aucun probleme", "aucun souci",
    "je vais essayer", "j essaie", "je vais le faire", "c est fait", "je l ai fait", "allez y",
    "volontiers", "ca roule", "bien recu", "oui oui", "c est moi", "vas y", "certainement",
    "c est bien ca",
)  # fmt: skip

# Category words and their weight: a word that names one category outright weighs 2, a word
# used for both ("connexion", "réseau", "téléphone") weighs 1, so "internet sur mon portable" is
# mobile and "le wifi de ma box" is internet.
INTERNET = {
    "box": 2, "la box": 2, "wifi": 2, "wi fi": 2, "fibre": 2, "adsl": 2, "vdsl": 2,
    "routeur": 2, "modem": 2, "livebox": 2, "freebox": 2, "bbox": 2, "ethernet": 2,
    "ligne fixe": 2, "telephone fixe": 2, "le fixe": 2, "decodeur": 2, "television": 2,
    "telecommande": 2, "la tele": 2, "tv": 2, "connexion internet": 2, "internet": 1,
    "connexion": 1, "debit": 1, "site": 1, "sites": 1, "navigateur": 1,
}  # fmt: skip
MOBILE = {
    "mobile": 2, "portable": 2, "4g": 2, "5g": 2, "3g": 2, "sms": 2, "texto": 2, "textos": 2,
    "forfait": 2, "carte sim": 2, "sim": 2, "smartphone": 2, "iphone": 2, "android": 2,
    "donnees mobiles": 2, "data": 2, "messagerie": 2, "roaming": 2, "itinerance": 2,
    "reseau": 1, "telephone": 1, "appels": 1, "appeler": 1, "capte": 1, "barres": 1,
}  # fmt: skip
# Requests the after-sales line does not handle: a person must (intent `out_of_scope`, slot
# `topic`). The most specific first: "résilier mon abonnement" is a cancellation.
OUT_OF_SCOPE: dict[str, tuple[str, ...]] = {
    "cancellation": (
        "resiliation", "resilier", "resilie", "annuler mon abonnement", "annuler mon contrat",
        "arreter mon abonnement", "mettre fin a mon", "code rio", "portabilite",
        "changer d operateur",
    ),
    "moving": (
        "demenagement", "demenage", "demenager", "nouvelle adresse", "changement d adresse",
        "changer d adresse", "transfert de ligne", "transferer ma ligne",
    ),
    "theft": (
        "on m a vole", "vole mon", "volee", "vol de mon", "perdu mon telephone",
        "perdu mon portable", "bloquer ma ligne", "bloquer ma carte sim", "suspendre ma ligne",
    ),
    "order": (
        "commande", "commander", "livraison", "colis", "pas ete livre", "renvoyer la box",
        "rendre la box", "retourner la box", "restituer",
    ),
    "billing": (
        "facture", "factures", "facturation", "facturer", "prelevement",
        "prelevements", "preleve", "paiement", "payer", "rembourse", "remboursement",
        "rembourser", "trop cher", "tarif", "tarifs", "impaye", "impayes", "echeancier", "rib",
        "geste commercial", "montant",
    ),
    "contract": (
        "contrat", "abonnement", "changer d offre", "changer mon offre", "changer de forfait",
        "changer mon forfait", "changement de forfait", "changement d offre", "nouvelle offre",
        "souscrire", "souscription", "engagement", "fin d engagement",
    ),
}  # fmt: skip
# A breakdown said with the request makes it ours: "depuis le déménagement je n'ai plus
# internet" is a repair, "je déménage, que faire de ma box" is not.
_BROKEN = re.compile(
    r"\b(panne|coupe|coupee|coupure|capte|lent|lente|rame|plante|bug|beug|clignote|rouge)\b"
)
_BROKEN_WITH_CATEGORY = re.compile(r"\b(plus de|pas de|n ai plus|n ai pas|plus d|pas d)\b")
# Phrases where a category word names the phone number, not the problem.
_NOT_CATEGORY = re.compile(r"\bnumero de (telephone|portable|mobile|fixe|ligne)\b")

# Words that introduce a name, the words of the name following.
_NAME_CUES: tuple[tuple[str, ...], ...] = (
    ("je", "m", "appelle"), ("mon", "nom", "est"), ("mon", "nom", "c", "est"),
    ("mon", "nom", "de", "famille", "est"), ("mon", "nom", "de", "famille", "c", "est"),
    ("moi", "c", "est"), ("de", "la", "part", "de"), ("monsieur",), ("madame",),
    ("mademoiselle",),
)  # fmt: skip
# Cues that also introduce other things ("c'est urgent", "je suis embêtée"): trusted when the
# dialog asked for a name, when a phone number comes with it, or for a first name and a surname.
_WEAK_NAME_CUES: tuple[tuple[str, ...], ...] = (("c", "est"), ("je", "suis"), ("ici",))
_TITLES = frozenset({"monsieur", "madame", "mademoiselle", "mr", "mme", "mlle", "m"})
# Words that are never a name: grammar words and what callers say around their name.
_COMMON_WORDS = """
    a ai aie alors allo appel appelle appelais appelle appeler au aussi autre aux avais avait avec
    avez avoir bah ben bien bientot bon bonjour bonsoir c ca car ce cela celui ces cest cet cette
    chez ci client cliente comme comment compte contrat d dans de des desole desolee deja dire dis
    dit donc du elle en encore enfin est et etait ete etre eu euh fait faire fais faut fois fixe
    gens heu hier hum il ils j je juste l la le les leur lui m ma madame mademoiselle mais me meme
    merci mes moi mon monsieur n ne ni nom nombre non nos notre nous numero on ou oui ouais par
    parce pardon pareil pas pense peu peut peux plus pour pourquoi prenom probleme problemes puis
    qu quand que quel quelle qui quoi rappeler rien s sa sais salut sans se ses si soir son sont
    souci soucis suis sur svp t ta te tes toi ton tous tout toute toujours tres trop tu un une
    vais veux voila vos votre vous vraiment y ligne panne marche fonctionne probleme coupe coupee
    lent lente desolee pret prete la ici numero telephone mobile portable sav wipple service
    abonne abonnee titulaire appareil plait vite ok urgent embete enerve perdu presse bloque
    coince fache decu certain content contente satisfait chez moi seul seule encore essaye
    embetee enervee perdue pressee bloquee coincee fachee decue certaine satisfaite malade
"""
_COMMON = frozenset(_COMMON_WORDS.split())
NOT_NAME = _COMMON | FILLERS | frozenset(
    w for phrases in (
        AGENT, REPEAT, REPEAT_ALONE, SLOWER, LOUDER, LOUDER_WEAK, GOODBYE, DENY, AFFIRM,
        INTERNET, MOBILE, WAIT,
        *OUT_OF_SCOPE.values(),
    )
    for p in phrases for w in p.split()
)  # fmt: skip
_MAX_NAME_WORDS = 3


def understand(text: str, expecting: str | None = None) -> Nlu:
    """The rule-based reading of one caller utterance."""
    text = join_spelled(text)
    folded = f" {fold(text)} "
    ws = words(text)
    if not folded.strip():
        return Nlu(intent="unknown", confidence=0.0)
    phone = find_phone(ws)
    name = _name(ws, phone, expecting)
    category = _category(folded, expecting)
    slots = {k: v for k, v in (("name", name), ("phone", phone and phone.phone)) if v}
    if category:
        slots["category"] = category
    topic = _topic(folded, category)
    intent, confidence = _intent(folded, ws, slots, expecting, topic)
    if intent == "out_of_scope" and topic:
        slots["topic"] = topic
    speak = _speak(folded, category)
    if intent == "repeat" and speak:
        slots["speak"] = speak
    return Nlu(intent=intent, slots=slots, confidence=confidence)


def _has(folded: str, phrases: Sequence[str]) -> bool:
    return any(f" {p} " in folded for p in phrases)


def _opens_with(folded: str, phrases: Sequence[str]) -> bool:
    return any(folded.startswith(f" {p} ") for p in phrases)


def _denies(folded: str) -> bool:
    return _has(folded, DENY) or bool(_NEGATED_WORKS.search(folded))


def _intent(
    folded: str,
    ws: Sequence[Word],
    slots: dict[str, str],
    expecting: str | None,
    topic: str | None,
) -> tuple[str, float]:
    closed = expecting in ("yes_no", "ack")
    if _has(folded, AGENT):
        return "agent", 1.0
    if _has(folded, REPEAT) or _speak(folded, slots.get("category")):
        return "repeat", 1.0
    # "D'accord, je vais les payer" to a fix is an answer, not a billing question.
    if topic is not None and not (expecting == "ack" and _opens_with(folded, AFFIRM)):
        return "out_of_scope", 1.0
    if closed and _denies(folded):
        return "deny", 1.0
    if closed and _has(folded, AFFIRM):
        return "affirm", 1.0
    # "Attendez, je débranche la box" to a fix: the box is not the answer, time is.
    waits = _has(folded, WAIT) and len(ws) <= _WAIT_WORDS and not _BROKEN.search(folded)
    if closed and waits:
        return "wait", 1.0
    if "name" in slots or "phone" in slots:
        return "inform", 1.0
    if "category" in slots:
        return slots["category"], 1.0
    if _has(folded, GOODBYE) or (_GOODBYE_LAST.search(folded) and len(ws) <= _GOODBYE_WORDS):
        return "goodbye", 1.0
    # After the answers: "attendez… non, ça ne marche pas" answers; "oui, attendez, je
    # cherche" (to "votre numéro ?") asks for time.
    if waits:
        return "wait", 1.0
    if _denies(folded):
        return "deny", 1.0
    if _has(folded, AFFIRM):
        return "affirm", 1.0
    if _has(folded, REPEAT_ALONE) and _says_nothing_else(ws):
        return "repeat", 0.8
    return "unknown", 0.0


def _speak(folded: str, category: str | None) -> str | None:
    """How the caller wants the bot to speak: "slower", "louder", or None.

    "J'entends mal" is about the bot only when no category is named: "j'entends mal mes
    correspondants sur mon portable" is a mobile problem."""
    if _has(folded, SLOWER):
        return "slower"
    if _has(folded, LOUDER) or (category is None and _has(folded, LOUDER_WEAK)):
        return "louder"
    return None


def _topic(folded: str, category: str | None) -> str | None:
    """The out-of-scope topic of a request, unless a breakdown comes with it."""
    topic = next((t for t, phrases in OUT_OF_SCOPE.items() if _has(folded, phrases)), None)
    if topic is None:
        return None
    broken = _BROKEN.search(folded) or _NEGATED_WORKS.search(folded)
    if broken or (category is not None and _BROKEN_WITH_CATEGORY.search(folded)):
        return None
    return topic


_REPEAT_ALONE_WORDS = frozenset(w for p in REPEAT_ALONE for w in p.split())


def _says_nothing_else(ws: Sequence[Word]) -> bool:
    """'pardon ?', 'hein, comment ?', but not 'comment je fais pour redémarrer'."""
    allowed = FILLERS | _COMMON | _REPEAT_ALONE_WORDS
    return all(part in allowed for w in ws for part in w.key.split("-"))


def _category(folded: str, expecting: str | None = None) -> str | None:
    folded = _NOT_CATEGORY.sub(" ", folded)
    cues = {p for p in (*INTERNET, *MOBILE) if f" {p} " in folded}
    if expecting == "category" and cues == {"internet", "mobile"}:
        # The question's two answers and nothing else: "A internet, mobile." for "Internet,
        # le wifi." (the offline recogniser's prompt, "box internet, mobile", echoed). Neither
        # is taken: the question is asked again, the keypad settles it.
        return None
    internet = sum(INTERNET.get(p, 0) for p in cues)
    mobile = sum(MOBILE.get(p, 0) for p in cues)
    if internet > mobile:
        return "internet"
    if mobile > internet:
        return "mobile"
    return None


def _name(ws: Sequence[Word], phone: PhoneMatch | None, expecting: str | None) -> str | None:
    """A name after a cue ("je m'appelle…", "c'est…", "Monsieur…"), before a phone number
    ("Pierre Dupont, 06…"), or alone when the dialog asked for it."""
    keys = [w.key for w in ws]
    trusted = expecting == "identity" or phone is not None
    for cue in _NAME_CUES + _WEAK_NAME_CUES:
        for start in range(len(keys) - len(cue) + 1):
            if tuple(keys[start : start + len(cue)]) == cue:
                name = _name_at(ws, start + len(cue))
                weak = cue in _WEAK_NAME_CUES and not trusted
                if name and (not weak or " " in name):
                    return name
    if phone is not None:
        before = _name_before(ws, phone.start)
        if before:
            return before
    if phone is not None:
        return _name_at(ws, phone.end, whole=True)
    alone = _name_at(ws, 0, whole=True)
    if expecting == "identity":
        return alone
    # Unasked, a name alone is a first name and a surname: "bonjour, Sophie Bernard".
    first = alone.split()[0].split("-")[0] if alone else ""
    if alone and " " in alone and fold(first) in FIRST_NAMES:
        return alone
    return None


def _is_name_word(w: Word) -> bool:
    return (
        w.key not in NOT_NAME
        and not is_number_word(w.key)
        and not any(c.isdigit() for c in w.key)
        and len(w.key) > 1
    )


def _name_at(ws: Sequence[Word], i: int, *, whole: bool = False) -> str | None:
    """The name that starts at word `i` (after titles and fillers), or None.

    With `whole`, the name must be all that is left of the utterance."""
    skip = _COMMON | FILLERS if whole else _TITLES | FILLERS | {"bien"}
    while i < len(ws) and ws[i].key in skip:
        i += 1
    parts: list[str] = []
    while i < len(ws) and len(parts) < _MAX_NAME_WORDS and _is_name_word(ws[i]):
        if parts and ws[i].pause_before:
            break
        parts.append(ws[i].text)
        i += 1
    rest = [w for w in ws[i:] if w.key not in FILLERS]
    if not parts or (whole and rest):
        return None
    return title_name(" ".join(parts))


def _name_before(ws: Sequence[Word], end: int) -> str | None:
    """'Pierre Dupont' in 'bonjour, Pierre Dupont, 06 12…': name words right before the number,
    themselves preceded by nothing but greetings and grammar words."""
    j = end
    while j > 0 and ws[j - 1].key in FILLERS | {"au", "le", "et"}:
        j -= 1
    start = j
    while start > 0 and j - start < _MAX_NAME_WORDS and _is_name_word(ws[start - 1]):
        start -= 1
    if start == j or (start > 0 and ws[start - 1].key not in NOT_NAME):
        return None
    return title_name(" ".join(w.text for w in ws[start:j]))
