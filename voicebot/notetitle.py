"""The title a note gets when it is saved without one: plain text, no Django, so that the notes
router (voicebot.services.intents) and its bench can use it without a configured project."""
from __future__ import annotations

MAX_TITLE = 200  # Note.title's max_length (models.py takes it from here)
TITLE_WORDS = 5  # a note saved without a title is named by its first words
# Words a title made from the text does not end on: "the plumber is coming on" and "call the
# bank to my" are what the user hears read back, and are half a thought.
_DANGLING = {"a", "an", "the", "to", "on", "at", "in", "of", "for", "my", "your", "and", "or", "but", "with",
             "is", "are", "be", "by", "from", "that", "this", "about", "into", "onto", "so", "as"}


def auto_title(body: str) -> str:
    """A title for a note saved without one: its first words, not ending on a dangling word."""
    words = (body or "").split()[:TITLE_WORDS]
    while len(words) > 1 and words[-1].lower().strip(".,;:!?") in _DANGLING:
        words.pop()
    return " ".join(words).rstrip(".,;:!?")[:MAX_TITLE]
