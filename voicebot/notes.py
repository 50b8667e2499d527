"""The notes tool: create, list and read a user's notes (plain functions the LLM calls)."""
from __future__ import annotations

from typing import Any

from .models import Note

MAX_LIST = 20


def create_note(user_id: int, title: str, body: str = "", session_id: Any = None) -> dict[str, Any]:
    title = (title or "").strip()[:200]
    if not title:
        return {"ok": False, "error": "a note needs a title"}
    note = Note.objects.create(user_id=user_id, title=title, body=(body or "").strip(), session_id=session_id)
    return {"ok": True, "id": note.pk, "title": note.title}


def list_notes(user_id: int) -> dict[str, Any]:
    notes = Note.objects.filter(user_id=user_id)[:MAX_LIST]
    return {"ok": True, "notes": [{"id": n.pk, "title": n.title} for n in notes]}


def read_note(user_id: int, note_id: Any = None, title: str | None = None) -> dict[str, Any]:
    notes = Note.objects.filter(user_id=user_id)
    note = None
    if note_id not in (None, ""):
        try:
            note = notes.filter(pk=int(note_id)).first()
        except (TypeError, ValueError):
            note = None
    if note is None and title:
        note = notes.filter(title__iexact=title.strip()).first() or notes.filter(title__icontains=title.strip()).first()
    if note is None:
        return {"ok": False, "error": "no such note"}
    return {"ok": True, "id": note.pk, "title": note.title, "body": note.body}
