"""The pure dialog state machine: every transition, table-driven, with no I/O."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import pytest

from brain import dialog as d
from brain.nlu import understand
from brain.solutions import Catalog

CATALOG = Catalog.load()
POLICY = d.Policy(no_input_s=8, max_no_input=3, max_misunderstood=2, max_call_s=600)
PIERRE = d.Customer(1, "Pierre Dupont", "0612345678")
CUSTOMERS = {
    c.phone: c
    for c in (
        PIERRE,
        d.Customer(2, "Marie Martin", "0698765432"),
        d.Customer(3, "Jean Bernard", "0755443322"),
    )
}


def heard(text: str, s: d.Snapshot | None = None, *, confident: bool = True) -> d.Heard:
    """What the shell hands the machine: the NLU reading, and the customer if a phone matched."""
    nlu = understand(text, d.expecting(s) if s is not None else None)
    phone = nlu.slots.get("phone")
    customer = CUSTOMERS.get(phone) if phone else None
    return d.Heard(text, nlu.intent, dict(nlu.slots), confident, customer, bool(phone))


@dataclass
class Run:
    """Drives the machine like the shell does: every Say is played to its end at once."""

    machine: d.Dialog = field(default_factory=lambda: d.Dialog(CATALOG, POLICY))
    s: d.Snapshot = field(default_factory=d.Snapshot)
    actions: list[d.Action] = field(default_factory=list)
    states: list[str] = field(default_factory=list)
    technician: bool = True

    def feed(self, event: d.Input, *, play: bool = True) -> list[d.Action]:
        self.s, out = self.machine.step(self.s, event)
        self.actions += out
        if not self.states or self.states[-1] != self.s.state:
            self.states.append(self.s.state)
        for action in list(out):
            match action:
                case d.FindCustomer(phone=phone):
                    out += self.feed(d.CustomerResult(CUSTOMERS.get(phone)), play=play)
                case d.FindTechnician():
                    out += self.feed(d.TechnicianResult(self.technician, "technicians"), play=play)
                case d.OpenTicket():
                    out += self.feed(d.TicketOpened("100042"), play=play)
                case d.Say(utterance_id=u) if play:
                    out += self.feed(d.PlaybackStarted(u), play=False)
                    out += self.feed(d.PlaybackEnded(u), play=False)
        return out

    def says(self, out: list[d.Action] | None = None) -> list[str]:
        return [
            a.phrase or f"text:{a.text}"
            for a in (self.actions if out is None else out)
            if isinstance(a, d.Say)
        ]

    def user(self, text: str, **kw: bool) -> list[str]:
        return self.says(self.feed(heard(text, self.s, **kw)))


def started(caller: str | None = None, customer: d.Customer | None = None) -> Run:
    r = Run()
    r.feed(d.CallStarted(caller, customer))
    return r


def test_the_sample_dialog_of_the_original_readme() -> None:
    r = started()
    assert r.says() == ["welcome"]
    assert r.user("Bonjour, j'ai un problème avec ma connexion.") == ["ask_identity"]
    assert r.user("Pierre Dupont, 06 12 34 56 78.") == ["ask_category"]
    assert (r.s.customer_id, r.s.phone) == (1, "0612345678")
    solution = r.user("Internet.")
    assert solution == [
        "text:Essayez de débrancher votre box pendant 30 secondes, puis rebranchez-la."
    ]
    assert r.user("D'accord, je vais essayer.") == ["ask_verification"]
    assert r.user("Oui, ça marche !") == ["goodbye"]
    assert r.states == [
        "WELCOME",
        "IDENTIFICATION",
        "DIAGNOSTIC",
        "SOLUTION",
        "VERIFICATION",
        "GOODBYE",
        "CLOSED",
    ]
    assert r.s.outcome == "solved"
    assert d.EndCall("hangup", "solved") in r.actions
    assert not any(isinstance(a, d.OpenTicket) for a in r.actions)


def test_the_call_ends_only_after_the_goodbye_has_played() -> None:
    r = started()
    for line in ("problème de connexion", "Pierre Dupont 0612345678", "internet", "ok"):
        r.user(line)
    out = r.feed(heard("oui ça marche", r.s), play=False)
    goodbye = next(a for a in out if isinstance(a, d.Say))
    assert goodbye.phrase == "goodbye" and not goodbye.interruptible
    assert not any(isinstance(a, d.EndCall) for a in out)
    assert any(isinstance(a, d.EndCall) for a in r.feed(d.PlaybackEnded(goodbye.utterance_id)))
    assert r.s.state == "CLOSED"


def test_the_end_guard_hangs_up_if_playback_is_never_reported() -> None:
    r = started()
    r.feed(heard("au revoir", r.s), play=False)
    assert r.s.state == "GOODBYE"
    assert d.StartTimer("end_guard", POLICY.end_guard_s) in r.actions
    assert any(isinstance(a, d.EndCall) for a in r.feed(d.Timeout("end_guard")))


@pytest.mark.parametrize(
    ("lines", "expected_states", "last_say", "outcome"),
    [
        # Mobile problem, solved at the second step.
        (
            [
                "mon portable ne capte plus",
                "Marie Martin zéro six quatre-vingt-dix-huit soixante-seize "
                "cinquante-quatre trente-deux",
                "mobile",
                "d'accord",
                "non toujours pas",
                "c'est fait",
                "oui",
            ],
            [
                "WELCOME",
                "IDENTIFICATION",
                "DIAGNOSTIC",
                "SOLUTION",
                "VERIFICATION",
                "SOLUTION",
                "VERIFICATION",
                "GOODBYE",
                "CLOSED",
            ],
            "goodbye",
            "solved",
        ),
        # Every solution fails, a technician is free: transfer.
        (
            [
                "internet ne marche plus",
                "Pierre Dupont 06 12 34 56 78",
                "internet",
                "ok",
                "non",
                "ok",
                "non ça ne marche pas",
                "ok",
                "toujours pas",
            ],
            [
                "WELCOME",
                "IDENTIFICATION",
                "DIAGNOSTIC",
                "SOLUTION",
                "VERIFICATION",
                "SOLUTION",
                "VERIFICATION",
                "SOLUTION",
                "VERIFICATION",
                "TRANSFER",
                "CLOSED",
            ],
            "transfer",
            "transfer",
        ),
        # The caller asks for a person at once.
        (
            ["je veux parler à un conseiller"],
            ["WELCOME", "TRANSFER", "CLOSED"],
            "transfer",
            "transfer",
        ),
        # Says goodbye before anything.
        (["non merci au revoir"], ["WELCOME", "GOODBYE", "CLOSED"], "goodbye", "abandoned"),
    ],
)
def test_dialog_paths(
    lines: list[str], expected_states: list[str], last_say: str, outcome: str
) -> None:
    r = started()
    for line in lines:
        r.user(line)
    assert r.states == expected_states
    assert r.says()[-1] == last_say
    assert r.s.outcome == outcome


def test_every_problem_has_several_short_fixes_tried_in_order() -> None:
    for problem in CATALOG.problems:
        assert len(problem.steps) >= 2, problem.key
        assert len(set(problem.steps)) == len(problem.steps), problem.key
        for step in problem.steps:
            for sentence in re.split(r"(?<=[.!?])\s+", step):
                assert len(sentence.split()) <= 20, sentence  # said by a TTS, heard once


def test_no_technician_opens_a_ticket_and_reads_its_number() -> None:
    r = started()
    r.technician = False
    for line in (
        "pas de réseau sur mon mobile",
        "Jean Bernard 07 55 44 33 22",
        "mobile",
        "ok",
        "non",
        "ok",
        "toujours pas",
        "ok",
        "non",
    ):
        r.user(line)
    tickets = [a for a in r.actions if isinstance(a, d.OpenTicket)]
    assert len(tickets) == 1 and tickets[0].status == "open" and tickets[0].category == "mobile"
    assert "mode avion" in tickets[0].summary  # what was tried is in the ticket
    assert "100042" in r.says()[-1]
    assert r.states[-3:] == ["TICKET", "GOODBYE", "CLOSED"]
    assert r.s.outcome == "ticket"


def test_a_transfer_also_leaves_a_ticket_for_the_technician() -> None:
    r = started()
    r.user("je veux un technicien")
    tickets = [a for a in r.actions if isinstance(a, d.OpenTicket)]
    assert [t.status for t in tickets] == ["transferred"]
    assert d.EndCall("transfer:technicians", "transfer") in r.actions


def test_silence_reprompts_then_last_prompt_then_hangs_up() -> None:
    r = started()
    out = r.feed(d.Timeout("no_input"))
    assert r.says(out) == ["welcome"]  # the question again
    out = r.feed(d.Timeout("no_input"))
    assert r.says(out) == ["no_input_last"]
    out = r.feed(d.Timeout("no_input"))
    assert r.says(out) == ["goodbye_no_input"]
    assert r.s.state == "CLOSED" and r.s.outcome == "no_input"
    assert d.EndCall("hangup", "no_input") in r.actions


def test_the_no_input_timer_starts_when_the_question_has_been_heard() -> None:
    r = Run()
    out = r.feed(d.CallStarted(), play=False)
    welcome = next(a for a in out if isinstance(a, d.Say))
    assert not any(isinstance(a, d.StartTimer) and a.name == "no_input" for a in out)
    assert r.feed(d.PlaybackEnded(welcome.utterance_id)) == [d.StartTimer("no_input", 8)]


def test_an_answer_resets_the_silence_count() -> None:
    r = started()
    r.feed(d.Timeout("no_input"))
    r.user("problème internet")
    assert r.s.no_input == 0


def test_repeat_says_the_last_question_again() -> None:
    r = started()
    r.user("j'ai un souci avec ma box")
    assert r.user("pardon vous pouvez répéter") == ["ask_identity"]
    assert r.s.state == "IDENTIFICATION"


def test_dtmf_fallback_after_two_misunderstandings() -> None:
    r = started()
    r.user("problème")
    r.user("Pierre Dupont 0612345678")
    assert r.s.state == "DIAGNOSTIC"
    assert r.user("euh je sais pas trop") == ["repeat"]
    assert r.user("bof") == ["ask_category_dtmf"]
    assert r.s.dtmf_mode
    out = r.says(r.feed(d.Dtmf("2")))
    assert r.s.category == "mobile" and r.s.state == "SOLUTION"
    assert out[0].startswith("text:Activez puis désactivez le mode avion")


def test_dtmf_answers_yes_no_in_verification() -> None:
    r = started()
    for line in ("problème de wifi", "Pierre Dupont 0612345678", "internet", "ok"):
        r.user(line)
    assert r.s.problem == "wifi"  # the symptom said first picks the problem
    r.feed(d.Dtmf("1"))
    assert r.s.outcome == "solved"


def test_phone_number_by_dtmf_during_identification() -> None:
    r = started()
    r.user("problème internet")
    for digit in "0612345678":
        r.feed(d.Dtmf(digit))
    assert r.s.phone == "0612345678" and r.s.state == "DIAGNOSTIC"


def test_low_confidence_transcripts_are_not_trusted() -> None:
    r = started()
    assert r.user("oui", confident=False) == ["repeat"]
    assert r.s.state == "WELCOME"


def test_unknown_caller_still_gets_help() -> None:
    r = started()
    r.user("problème avec internet")
    assert r.user("je ne sais pas") == ["ask_phone"]
    assert r.user("euh") == ["ask_category"]
    assert r.s.state == "DIAGNOSTIC" and r.s.customer_id is None


def test_registered_caller_number_is_enough_to_identify() -> None:
    r = started(caller="0612345678", customer=PIERRE)
    assert r.s.customer_id == 1
    r.user("problème de connexion")
    assert r.user("Pierre Dupont") == ["ask_category"]


def test_maximum_call_length_says_goodbye_and_opens_a_ticket() -> None:
    r = started()
    r.user("problème de connexion")
    out = r.feed(d.Timeout("max_length"))
    assert "goodbye_max_length" in r.says(out)
    assert r.s.outcome == "max_length"
    assert any(isinstance(a, d.OpenTicket) for a in r.actions)


def test_barge_in_flushes_interruptible_utterances_only() -> None:
    r = Run()
    out = r.feed(d.CallStarted(), play=False)
    welcome = next(a for a in out if isinstance(a, d.Say))
    r.feed(d.PlaybackStarted(welcome.utterance_id), play=False)
    assert d.Flush(welcome.utterance_id) in r.feed(d.SpeechStarted())
    # The goodbye is not interruptible.
    out = r.feed(heard("au revoir", r.s), play=False)
    goodbye = next(a for a in out if isinstance(a, d.Say))
    r.feed(d.PlaybackStarted(goodbye.utterance_id), play=False)
    assert not any(
        isinstance(a, d.Flush) and a.utterance_id == goodbye.utterance_id
        for a in r.feed(d.SpeechStarted())
    )


def test_caller_hang_up_mid_call_leaves_a_ticket() -> None:
    r = started()
    r.user("problème de connexion")
    out = r.feed(d.CallerHungUp())
    assert any(isinstance(a, d.OpenTicket) for a in out)
    assert r.s.state == "CLOSED" and r.s.outcome == "abandoned"
    assert r.feed(heard("allo")) == []  # nothing happens after the end


def test_caller_hang_up_during_the_welcome_opens_no_ticket() -> None:
    r = started()
    assert not any(isinstance(a, d.OpenTicket) for a in r.feed(d.CallerHungUp()))


def test_provider_timeout_plays_the_hold_phrase_and_a_gap_asks_to_repeat() -> None:
    r = started()
    assert r.says(r.feed(d.ProviderTrouble("timeout"))) == ["hold"]
    assert r.says(r.feed(d.ProviderTrouble("gap"))) == ["repeat"]


def test_resume_rearms_the_silence_timer() -> None:
    r = started()
    r.user("problème de connexion")
    assert d.StartTimer("no_input", 8) in r.feed(d.Resume())


def test_snapshot_survives_a_round_trip_through_json() -> None:
    import msgspec

    r = started()
    r.user("problème de connexion")
    r.user("Pierre Dupont 0612345678")
    data = msgspec.json.encode(msgspec.to_builtins(r.s))
    assert msgspec.convert(msgspec.json.decode(data), d.Snapshot) == r.s


def test_describe_names_every_action() -> None:
    assert d.describe(d.Say("u1", phrase="welcome")) == "say:welcome"
    assert d.describe(d.EndCall("transfer:technicians", "x")) == "end:transfer:technicians"


def test_an_unknown_number_is_read_back_and_a_yes_carries_on() -> None:
    r = started()
    r.user("problème de connexion")
    said = r.user("Paul Durand 06 11 22 33 44")
    assert said == ["text:J'ai noté le 0611223344. Est-ce bien votre numéro ?"]
    assert r.s.state == "IDENTIFICATION" and r.s.confirming_phone
    assert d.expecting(r.s) == "yes_no"
    assert r.user("oui c'est ça") == ["ask_category"]
    assert r.s.customer_id is None and r.s.phone == "0611223344"


def test_a_misheard_number_is_corrected_after_a_no() -> None:
    r = started()
    r.user("problème de connexion")
    r.user("Pierre Dupont 06 12 34 56 68")  # as an offline recognizer may hear it
    assert r.user("non") == ["ask_phone"]
    assert r.s.phone is None
    assert r.user("zéro six douze trente-quatre cinquante-six soixante-dix-huit") == [
        "ask_category"
    ]
    assert r.s.customer_id == PIERRE.id


def test_a_number_typed_on_the_keypad_is_looked_up() -> None:
    r = started()
    r.user("problème internet")
    out: list[d.Action] = []
    for digit in "0612345678":
        out += r.feed(d.Dtmf(digit))
    assert d.FindCustomer("0612345678") in out
    assert r.s.customer_id == PIERRE.id and r.s.state == "DIAGNOSTIC"


def test_a_known_number_needs_no_read_back() -> None:
    r = started()
    r.user("problème de connexion")
    assert r.user("Pierre Dupont 06 12 34 56 78") == ["ask_category"]


def test_answering_the_read_back_with_the_problem_moves_on() -> None:
    r = started()
    r.user("bonjour")
    r.user("Paul Durand 06 11 22 33 44")
    assert r.s.confirming_phone
    said = r.user("internet")
    assert said[0].startswith("text:Essayez de débrancher votre box")
    assert r.s.state == "SOLUTION" and r.s.phone == "0611223344"


def test_speech_that_never_becomes_words_still_ends_in_a_reprompt() -> None:
    r = started()
    out = r.feed(d.SpeechStarted())
    assert d.StartTimer("no_input", POLICY.no_input_s + POLICY.max_utterance_s) in out
    assert r.says(r.feed(d.Timeout("no_input"))) == ["welcome"]
