"""The fixed phrases of the dialog: keys travel in `say` events, texts feed the phrase cache.

Part of the contract because the brain names a phrase and the TTS worker plays it; changing a
text means regenerating the cache (`voicebot cache`), never reusing a key for another meaning.
"""

from __future__ import annotations

from typing import Final

PHRASES: Final[dict[str, str]] = {
    "welcome": "Bonjour, bienvenue au SAV Wipple. Comment puis-je vous aider ?",
    "ask_identity": "Puis-je avoir votre nom et votre numéro de téléphone ?",
    "ask_phone": "Quel est votre numéro de téléphone ? Vous pouvez aussi le taper sur le clavier.",
    "ask_phone_dtmf": (
        "Je n'ai pas bien compris votre numéro. "
        "Tapez-le sur le clavier de votre téléphone, puis la touche dièse."
    ),
    "ask_category": "Merci. Avez-vous un problème avec Internet ou avec votre mobile ?",
    "ask_category_dtmf": "Tapez 1 pour Internet, 2 pour le mobile.",
    "ask_verification": (
        "Avez-vous pu faire la manipulation ? Est-ce que ça fonctionne maintenant ?"
    ),
    "ask_yes_no_dtmf": "Tapez 1 pour oui, 2 pour non.",
    "ok": "D'accord.",
    "hold": "Un instant, s'il vous plaît.",
    "take_your_time": "Je vous en prie, prenez votre temps.",
    "repeat": "Pardon, je n'ai pas bien compris. Pouvez-vous répéter ?",
    "no_input": "Êtes-vous toujours en ligne ?",
    "no_input_last": "Je ne vous entends pas. Sans réponse de votre part, je vais raccrocher.",
    "goodbye": "Merci pour votre appel. Au revoir !",
    "goodbye_no_input": "Je n'ai pas de réponse. Merci de rappeler le SAV. Au revoir.",
    "goodbye_max_length": (
        "Nous avons atteint la durée maximale de cet appel. "
        "Un technicien vous rappellera. Au revoir."
    ),
    "transfer": "Je vous transfère vers un technicien. Ne quittez pas.",
    "out_of_scope": (
        "Je ne peux traiter ici que les pannes Internet et mobile. "
        "Je cherche un conseiller disponible pour votre demande, un instant s'il vous plaît."
    ),
    "transfer_advisor": "Je vous transfère vers un conseiller. Ne quittez pas.",
    "busy": "Toutes nos lignes sont occupées. Merci de rappeler dans quelques minutes. Au revoir.",
    "unavailable": (
        "Le service est momentanément indisponible. Merci de rappeler plus tard. Au revoir."
    ),
}
