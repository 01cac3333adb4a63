"""What the bot says in the original README's sample dialog: phrase keys, "text" for the
solution read from the catalogue. Shared by the tests that play that dialog."""

SAMPLE_SAYS = ["welcome", "ask_identity", "ask_category", "text", "ask_verification", "goodbye"]
