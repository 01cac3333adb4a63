"""The scripted callers: who they are, what they say to each question, and how the call must end.

A persona is facts (name, number, problem, whether the fixes work) plus its own words for each
kind of question the bot asks (`answers`), with quirks written into those words: hesitations,
corrections, one-word answers, a number said digit by digit... The policy (`policy.py`) picks the
answer to the question the bot actually asked, so a misheard line does not desynchronise the rest.

Answers, per question kind, are tried in order each time that question comes again (the last one
repeats). An answer is a line to say, or `dtmf:DIGITS`, `hangup`, `silent` (say nothing until the
bot gives up), or several of those separated by `|` (said one after the other, each after the
bot's reply). Question kinds: problem (the welcome), identity, phone, confirm_phone (the bot reads
a number back), phone_keypad (the number, typed), category, category_keypad, solution (a fix is
proposed), verification, verification_keypad, still_there. Kinds a persona does not list get the
defaults below.

The customers (init_db.sql): Pierre Dupont 06 12 34 56 78 and 01 45 67 89 12 (internet and
mobile), Marie Martin 06 98 76 54 32 (mobile), Jean Bernard 07 55 44 33 22 (internet). An
internet technician is available, a mobile one is not: an escalated internet call ends in a
transfer, a mobile one in a ticket.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from quality.metrics import Expect
from quality.numbers_fr import say_digits, say_pairs

PIERRE, MARIE, JEAN = "Pierre Dupont", "Marie Martin", "Jean Bernard"
SOLVED = frozenset({"solved"})
ABANDONED = frozenset({"abandoned"})
TRANSFER = frozenset({"transfer"})
TICKET = frozenset({"ticket"})
HUMAN = frozenset({"transfer", "ticket"})  # a person takes over, now or by calling back


@dataclass(frozen=True, kw_only=True)
class Persona:
    key: str
    about: str  # what this caller exercises
    expect: Expect
    phone: str | None = None  # the number they mean (to check a read-back), national digits
    category: str | None = None  # internet | mobile: the keypad answer
    fix_works_at: int = 1  # the fix that works (1: the first), 0: none does
    yes: tuple[str, ...] = ("Oui.",)  # yes forms, used in turn
    no: tuple[str, ...] = ("Non.",)
    answers: dict[str, tuple[str, ...]] = field(default_factory=dict)
    caller_id: str | None = None  # the number the dialplan registers before the call

    def answer(self, kind: str, nth: int) -> str | None:
        """The persona's own answer to the `nth` (0-based) question of `kind`, if it has one."""
        options = self.answers.get(kind)
        if not options:
            return None
        return options[min(nth, len(options) - 1)]


def persona(
    key: str,
    about: str,
    expect: Expect,
    *,
    problem: str | tuple[str, ...],
    identity: str | tuple[str, ...] | None = None,
    phone_line: str | None = None,
    category_line: str | tuple[str, ...] | None = None,
    solution: str | tuple[str, ...] = "D'accord, je vais essayer.",
    **facts: object,
) -> Persona:
    """A persona from its lines; the usual kinds get a tuple even when one line is given."""

    def many(v: str | tuple[str, ...] | None) -> tuple[str, ...]:
        return () if v is None else (v,) if isinstance(v, str) else v

    answers = {
        "problem": many(problem),
        "identity": many(identity),
        "phone": many(phone_line),
        "category": many(category_line),
        "solution": many(solution),
    }
    extra = facts.pop("answers", {})
    assert isinstance(extra, dict)
    answers |= extra
    return Persona(
        key=key,
        about=about,
        expect=expect,
        answers={k: v for k, v in answers.items() if v},
        **facts,  # type: ignore[arg-type]
    )


PERSONAS: tuple[Persona, ...] = (
    persona(
        "sample",
        "the sample dialog of the original README",
        Expect(outcomes=SOLVED, category="internet", customer=PIERRE),
        problem="Bonjour, j'ai un problème avec ma connexion.",
        identity="Pierre Dupont, 06 12 34 56 78.",
        category_line="Internet.",
        yes=("Oui, ça marche !",),
        phone="0612345678",
        category="internet",
    ),
    persona(
        "mobile_no_network",
        "mobile, no network, number in pairs",
        Expect(outcomes=SOLVED, category="mobile", customer=MARIE),
        problem="Bonjour, je n'ai plus de réseau sur mon portable depuis ce matin.",
        identity=f"Marie Martin, {say_pairs('0698765432')}.",
        category_line="Le mobile.",
        solution="Très bien, je le fais.",
        yes=("Oui, c'est bon, j'ai du réseau.",),
        phone="0698765432",
        category="mobile",
    ),
    persona(
        "second_fix_works",
        "the first fix fails, the second works",
        Expect(outcomes=SOLVED, category="internet", customer=JEAN),
        problem="Ma connexion internet est coupée depuis hier.",
        identity="Jean Bernard, 07 55 44 33 22.",
        category_line="C'est internet.",
        solution=("D'accord, je débranche la box.", "Bon, je vérifie le câble."),
        fix_works_at=2,
        no=("Non, toujours pas.",),
        yes=("Oui, ça remarche !",),
        phone="0755443322",
        category="internet",
    ),
    persona(
        "nothing_works_internet",
        "no fix works on an internet problem: a technician takes the call",
        Expect(outcomes=TRANSFER, category="internet", customer=PIERRE),
        problem="Bonjour, mon wifi ne marche plus du tout.",
        identity="Pierre Dupont, 06 12 34 56 78.",
        category_line="Internet, le wifi.",
        fix_works_at=0,
        no=("Non, ça ne marche toujours pas.", "Toujours pas, non."),
        phone="0612345678",
        category="internet",
    ),
    persona(
        "nothing_works_mobile",
        "no fix works on a mobile problem: no mobile technician, so a ticket",
        Expect(outcomes=TICKET, category="mobile", customer=MARIE),
        problem="Je ne reçois plus aucun SMS sur mon téléphone.",
        identity=f"Marie Martin, {say_pairs('0698765432')}.",
        category_line="Mobile.",
        fix_works_at=0,
        no=("Non, je ne reçois toujours rien.",),
        phone="0698765432",
        category="mobile",
    ),
    persona(
        "agent_first",
        "asks for a person straight away",
        Expect(outcomes=HUMAN),
        problem="Je voudrais parler à un conseiller, s'il vous plaît.",
        identity="Je veux parler à un conseiller.",
        category_line="Passez-moi un conseiller, s'il vous plaît.",
        solution="Non, je veux parler à quelqu'un.",
        no=("Non. Je veux un conseiller.",),
    ),
    persona(
        "agent_at_solution",
        "mobile caller who asks for a technician instead of trying the fix",
        Expect(outcomes=TICKET, category="mobile", customer=MARIE),
        problem="Mon portable ne capte plus le réseau.",
        identity="Marie Martin, 06 98 76 54 32.",
        category_line="C'est mon mobile.",
        solution="Non, je préfère parler à un technicien.",
        fix_works_at=0,
        no=("Non, passez-moi un technicien.",),
        phone="0698765432",
        category="mobile",
    ),
    persona(
        "out_of_scope_bill",
        "billing question: not a technical problem",
        Expect(outcomes=HUMAN),
        problem="Bonjour, c'est pour une question sur ma facture, j'ai été prélevé deux fois.",
        identity="Pierre Dupont, 06 12 34 56 78.",
        category_line=(
            "Ni l'un ni l'autre, c'est pour ma facture.",
            "C'est une question de facture.",
        ),
        solution="Mais non, ce n'est pas une panne, c'est ma facture.",
        no=("Non, vous ne m'avez pas compris, c'est pour ma facture.",),
        fix_works_at=0,
        phone="0612345678",
    ),
    persona(
        "out_of_scope_cancel",
        "wants to cancel the contract",
        Expect(outcomes=HUMAN),
        problem="Je souhaite résilier mon abonnement.",
        identity=f"Jean Bernard, {say_pairs('0755443322')}.",
        category_line="Aucun problème technique, je veux résilier.",
        solution="Non, je veux juste résilier mon contrat.",
        no=("Non. Je veux résilier.",),
        fix_works_at=0,
        phone="0755443322",
    ),
    persona(
        "out_of_scope_moving",
        "moving house (mentions the box, yet no fault to fix)",
        Expect(outcomes=HUMAN),
        problem=(
            "Je déménage le mois prochain et je voudrais transférer ma box à ma nouvelle adresse."
        ),
        identity="Pierre Dupont, 06 12 34 56 78.",
        category_line="Ce n'est pas une panne, c'est pour un déménagement.",
        solution="Non, ma box marche très bien, c'est pour mon déménagement.",
        no=("Non, c'est pour le déménagement.",),
        fix_works_at=0,
        phone="0612345678",
    ),
    persona(
        "unknown_caller",
        "not a customer: the number is read back, then help without an identity",
        Expect(outcomes=SOLVED, category="internet", customer=""),
        problem="Bonjour, ma box ne fonctionne plus.",
        identity=f"Sophie Lambert, {say_pairs('0611223344')}.",
        category_line="Internet.",
        yes=("Oui, c'est bien ça.", "Oui, ça marche maintenant."),
        phone="0611223344",
        category="internet",
    ),
    persona(
        "hesitant",
        "hesitations everywhere",
        Expect(outcomes=SOLVED, category="internet", customer=PIERRE),
        problem="Euh… bonjour, euh… j'ai un souci avec, euh, mon wifi.",
        identity=(
            "Euh… oui, alors, Pierre Dupont, et mon numéro c'est le, euh, "
            f"{say_pairs('0612345678')}."
        ),
        category_line="Euh… internet.",
        solution="Euh, d'accord, je fais ça.",
        yes=("Euh… oui, oui, ça marche.",),
        phone="0612345678",
        category="internet",
    ),
    persona(
        "correction",
        "corrects the number mid-sentence",
        Expect(outcomes=SOLVED, category="internet", customer=JEAN),
        problem="Mon internet rame énormément depuis quelques jours.",
        identity=(
            "Jean Bernard. Mon numéro c'est le zéro six… non pardon, c'est le "
            f"{say_pairs('0755443322')}."
        ),
        category_line="Internet.",
        yes=("Oui, c'est beaucoup mieux.",),
        phone="0755443322",
        category="internet",
    ),
    persona(
        "digit_by_digit",
        "says the number one digit at a time",
        Expect(outcomes=SOLVED, category="mobile", customer=MARIE),
        problem="Bonjour, je n'arrive plus à envoyer de SMS.",
        identity=f"Marie Martin, {say_digits('0698765432')}.",
        phone_line=f"{say_digits('0698765432')}.",
        category_line="Mobile.",
        yes=("Oui, ça fonctionne.",),
        phone="0698765432",
        category="mobile",
    ),
    persona(
        "landline_number",
        "gives the landline number in pairs",
        Expect(outcomes=SOLVED, category="internet", customer=PIERRE),
        problem="Je n'ai plus de connexion internet.",
        identity=f"Pierre Dupont, mon numéro fixe c'est le {say_pairs('0145678912')}.",
        category_line="Internet.",
        yes=("Oui, c'est réglé.",),
        phone="0145678912",
        category="internet",
    ),
    persona(
        "plus33",
        "gives the number with +33; mobile data problem",
        Expect(outcomes=SOLVED, category="mobile", customer=PIERRE),
        problem="Internet ne marche plus sur mon téléphone portable.",
        identity=(
            "Pierre Dupont, plus trente-trois, six, douze, trente-quatre, cinquante-six, "
            "soixante-dix-huit."
        ),
        phone_line=(
            "Plus trente-trois, six, douze, trente-quatre, cinquante-six, soixante-dix-huit."
        ),
        category_line="Le mobile.",
        yes=("Oui, ça marche.",),
        phone="0612345678",
        category="mobile",
    ),
    persona(
        "caller_id_known",
        "the dialplan registered a customer's number; gives only the name",
        Expect(outcomes=SOLVED, category="internet", customer=JEAN),
        problem="Bonjour, ma connexion internet ne marche plus.",
        identity="Jean Bernard.",
        phone_line="07 55 44 33 22.",
        category_line="Internet.",
        yes=("Oui, merci.",),
        phone="0755443322",
        category="internet",
        caller_id="0755443322",
    ),
    persona(
        "hangs_up_at_solution",
        "hangs up instead of trying the fix",
        Expect(outcomes=ABANDONED, category="mobile", customer=MARIE),
        problem="Je n'ai plus de réseau sur mon mobile.",
        identity="Marie Martin, 06 98 76 54 32.",
        category_line="Mobile.",
        solution="Bon, je n'ai pas le temps, je rappellerai.|hangup",
        phone="0698765432",
        category="mobile",
    ),
    persona(
        "hangs_up_early",
        "hangs up when asked for a name",
        Expect(outcomes=ABANDONED, customer=""),
        problem="Bonjour, j'ai un problème avec ma box.",
        identity="hangup",
        category="internet",
    ),
    persona(
        "one_word",
        "one-word answers only; the first fix fails",
        Expect(outcomes=SOLVED, category="internet", customer=PIERRE),
        problem="Internet.",
        identity="Pierre Dupont.",
        phone_line="06 12 34 56 78.",
        category_line="Internet.",
        solution="Ok.",
        fix_works_at=2,
        yes=("Oui.",),
        no=("Non.",),
        phone="0612345678",
        category="internet",
    ),
    persona(
        "yes_forms",
        "yes in many forms",
        Expect(outcomes=SOLVED, category="internet", customer=JEAN),
        problem="Bonjour, je n'ai plus internet sur ma box.",
        identity="Jean Bernard, 07 55 44 33 22.",
        category_line="Internet, oui.",
        solution=("Ça marche, je m'en occupe.", "Entendu, je regarde."),
        fix_works_at=2,
        no=("Bof, pas vraiment.",),
        yes=("Ouais, nickel, ça refonctionne !", "Tout à fait."),
        phone="0755443322",
        category="internet",
    ),
    persona(
        "no_forms",
        "no in many forms; mobile, nothing works",
        Expect(outcomes=TICKET, category="mobile", customer=MARIE),
        problem="Mon téléphone n'a plus de réseau.",
        identity="Marie Martin, 06 98 76 54 32.",
        category_line="Mobile.",
        fix_works_at=0,
        no=("Pas du tout.", "Négatif, ça ne marche toujours pas."),
        phone="0698765432",
        category="mobile",
    ),
    persona(
        "spelled_name",
        "spells the surname",
        Expect(outcomes=SOLVED, category="internet", customer=PIERRE),
        problem="J'ai un problème de wifi.",
        identity="Pierre Dupont, D, U, P, O, N, T. Mon numéro est le 06 12 34 56 78.",
        category_line="Internet.",
        yes=("Oui, ça marche.",),
        phone="0612345678",
        category="internet",
    ),
    persona(
        "bare_name_then_number",
        "gives a bare name, then the number when asked; not a customer",
        Expect(outcomes=SOLVED, category="mobile", customer=""),
        problem="Mon téléphone portable ne capte plus.",
        identity="Sophie Lambert.",
        phone_line=f"{say_pairs('0611223344')}.",
        category_line="Mobile.",
        yes=("Oui.", "Oui, ça capte."),
        phone="0611223344",
        category="mobile",
    ),
    persona(
        "goodbye_before_verification",
        "says goodbye when the fix is proposed: not a solved call",
        Expect(outcomes=ABANDONED, category="internet", customer=PIERRE),
        problem="Ma connexion est coupée.",
        identity="Pierre Dupont, 06 12 34 56 78.",
        category_line="Internet.",
        solution="Bon, merci, je ferai ça plus tard. Au revoir.|hangup",
        phone="0612345678",
        category="internet",
    ),
    persona(
        "slower_please",
        "asks the bot to speak more slowly",
        Expect(outcomes=SOLVED, category="mobile", customer=MARIE),
        problem="Je n'ai plus de réseau mobile.",
        identity="Marie Martin, 06 98 76 54 32.",
        category_line="Mobile.",
        solution=("Pardon, vous pouvez parler plus lentement ?", "D'accord, je le fais."),
        yes=("Oui, ça marche.",),
        phone="0698765432",
        category="mobile",
    ),
    persona(
        "repeats_number_at_readback",
        "answers the read-back by saying the same number again",
        Expect(outcomes=SOLVED, category="internet", customer=""),
        problem="Ma box internet clignote en rouge.",
        identity=f"Sophie Lambert, {say_pairs('0611223344')}.",
        category_line="Internet.",
        yes=("Oui, ça marche.",),
        answers={"confirm_phone": (f"{say_pairs('0611223344')}.", "Oui.")},
        phone="0611223344",
        category="internet",
    ),
    persona(
        "all_in_one",
        "name, number and problem in the first sentence",
        Expect(outcomes=SOLVED, category="internet", customer=PIERRE),
        problem=(
            "Bonjour, Pierre Dupont à l'appareil, mon numéro est le 06 12 34 56 78, depuis hier "
            "soir mon wifi se coupe tout le temps."
        ),
        identity="Pierre Dupont, 06 12 34 56 78.",
        category_line="Internet, le wifi.",
        yes=("Oui, c'est bon.",),
        phone="0612345678",
        category="internet",
    ),
    persona(
        "belgian_number",
        "a Belgian mobile number (+32), not a customer",
        Expect(outcomes=SOLVED, category="mobile", customer=""),
        problem="Bonjour, je n'ai plus de réseau sur mon portable.",
        identity=(
            "Luc Peeters, plus trente-deux, quatre cent septante et un, vingt-trois, "
            "quarante-cinq, soixante-sept."
        ),
        phone_line=(
            "Plus trente-deux, quatre cent septante et un, vingt-trois, quarante-cinq, "
            "soixante-sept."
        ),
        category_line="Mobile.",
        yes=("Oui.", "Oui, ça marche."),
        phone="32471234567",
        category="mobile",
    ),
    persona(
        "vague_category",
        "cannot say which service: the keypad settles it",
        Expect(outcomes=SOLVED, category="internet", customer=PIERRE),
        problem="Bonjour, il y a un problème avec le boîtier dans mon salon.",
        identity="Pierre Dupont, 06 12 34 56 78.",
        category_line=(
            "Ben, c'est le boîtier qui clignote, là.",
            "Le boîtier avec les lumières.",
        ),
        yes=("Oui, ça remarche.",),
        phone="0612345678",
        category="internet",
    ),
    persona(
        "needs_time",
        "asks for time to find the number, and while doing the fix",
        Expect(outcomes=SOLVED, category="internet", customer=JEAN),
        problem="Bonjour, ma connexion internet coupe sans arrêt.",
        identity=(
            "Euh, attendez, je cherche mon numéro.",
            f"Voilà, Jean Bernard, {say_pairs('0755443322')}.",
        ),
        solution="Une seconde, je le fais.",
        yes=("Oui, ça marche maintenant.",),
        phone="0755443322",
        category="internet",
    ),
    persona(
        "silent",
        "says nothing at all: the bot must give up politely",
        Expect(outcomes=frozenset({"no_input"}), customer=""),
        problem="silent",
    ),
)


def by_key() -> dict[str, Persona]:
    return {p.key: p for p in PERSONAS}
