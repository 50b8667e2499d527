"""The notes tool: create, list, read, update, delete and search a user's notes.

Plain functions the LLM's tool handlers call; each returns a JSON-able dict with
`ok`, and a note is always looked up among the user's own notes only.
"""
from __future__ import annotations

from typing import Any

from django.db.models import Q, QuerySet

from .models import Note
from .notetitle import MAX_TITLE, auto_title

MAX_LIST = 20
# Words a user says for "the one I saved last" in place of a title.
LATEST = {"latest", "last", "newest", "most recent", "recent", "last one", "latest one", "that", "it", "this"}


def create_note(user_id: int, title: str, body: str = "", session_id: Any = None) -> dict[str, Any]:
    title = (title or "").strip()[:MAX_TITLE] or auto_title(body)
    if not title:
        return {"ok": False, "error": "a note needs a title or some text"}
    note = Note.objects.create(user_id=user_id, title=title, body=(body or "").strip(), session_id=session_id)
    return {"ok": True, "id": note.pk, "title": note.title, "body": note.body}


def list_notes(user_id: int) -> dict[str, Any]:
    notes = Note.objects.filter(user_id=user_id)[:MAX_LIST]
    return {"ok": True, "notes": [{"id": n.pk, "title": n.title} for n in notes]}


def find_note(user_id: int, note_id: Any = None, title: str | None = None, *, latest: bool = False) -> Note | None:
    """One of the user's notes: by id, "the latest", its exact title, then a title or text containing it."""
    notes: QuerySet[Note] = Note.objects.filter(user_id=user_id)
    if note_id not in (None, ""):
        try:
            return notes.filter(pk=int(note_id)).first()
        except (TypeError, ValueError):
            return None
    wanted = (title or "").strip().strip(".!?\"'").lower()
    for prefix in ("the ", "my ", "a "):
        wanted = wanted[len(prefix):] if wanted.startswith(prefix) else wanted
    for suffix in (" note", " notes", " list", " memo"):
        wanted = wanted.removesuffix(suffix)
    wanted = wanted.strip()
    if latest or wanted in LATEST:
        return notes.order_by("-created_at", "-pk").first()
    if not wanted:
        return None
    return (notes.filter(title__iexact=wanted).first() or notes.filter(title__icontains=wanted).first()
            or notes.filter(body__icontains=wanted).first())


def _not_found(user_id: int) -> dict[str, Any]:
    """Why a note was not found: none by that name, or none at all (the user is told which)."""
    if not Note.objects.filter(user_id=user_id).exists():
        return {"ok": False, "error": "no notes yet"}
    return {"ok": False, "error": "no such note"}


def read_note(user_id: int, note_id: Any = None, title: str | None = None, *, latest: bool = False) -> dict[str, Any]:
    note = find_note(user_id, note_id, title, latest=latest)
    if note is None:
        return _not_found(user_id)
    return {"ok": True, "id": note.pk, "title": note.title, "body": note.body}


def update_note(user_id: int, title: str | None = None, body: str = "", *, note_id: Any = None,
                latest: bool = False, append: bool = True) -> dict[str, Any]:
    """Add to a note's text (or replace it with `append=False`)."""
    note = find_note(user_id, note_id, title, latest=latest)
    if note is None:
        return _not_found(user_id)
    text = (body or "").strip()
    if not text:
        return {"ok": False, "error": "nothing to add to the note"}
    note.body = f"{note.body.rstrip()}\n{text}".strip() if append else text
    note.save(update_fields=["body"])
    return {"ok": True, "id": note.pk, "title": note.title, "body": note.body}


def delete_note(user_id: int, title: str | None = None, *, note_id: Any = None, latest: bool = False) -> dict[str, Any]:
    note = find_note(user_id, note_id, title, latest=latest)
    if note is None:
        return _not_found(user_id)
    found = {"id": note.pk, "title": note.title}
    note.delete()
    return {"ok": True, "deleted": True, **found}


def search_notes(user_id: int, query: str) -> dict[str, Any]:
    words = [w for w in (query or "").lower().split() if len(w) > 2] or [(query or "").strip().lower()]
    if not any(words):
        return {"ok": False, "error": "nothing to search for"}
    match = Q()
    for word in words:
        match |= Q(title__icontains=word) | Q(body__icontains=word)
    notes = Note.objects.filter(user_id=user_id).filter(match)[:MAX_LIST]
    return {"ok": True, "query": query, "notes": [{"id": n.pk, "title": n.title, "body": n.body[:200]} for n in notes]}
