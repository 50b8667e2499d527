"""The LLM's tools: the notes tool (create, list, read, update, delete, search the user's notes)."""
from __future__ import annotations

from typing import Any, Callable

from channels.db import database_sync_to_async
from pipecat.adapters.llm.schemas.function_schema import FunctionSchema
from pipecat.adapters.llm.schemas.tools_schema import ToolsSchema
from pipecat.services.llm_service import FunctionCallParams, LLMService

from . import notes

_TITLE = {"type": "string", "description": "The note's title, or words from it"}
_LATEST = {"type": "boolean", "description": "True for the note saved most recently"}

CREATE = FunctionSchema(
    name="create_note", description="Save a new note for the user.",
    properties={"title": {"type": "string", "description": "A short title"},
                "body": {"type": "string", "description": "The note's text"}},
    required=["body"])
LIST = FunctionSchema(name="list_notes", description="List the titles of the user's notes.", properties={},
                      required=[])
READ = FunctionSchema(
    name="read_note", description="Read one of the user's notes: by title, or the latest one.",
    properties={"title": _TITLE, "latest": _LATEST}, required=[])
UPDATE = FunctionSchema(
    name="update_note", description="Add text to one of the user's existing notes.",
    properties={"title": _TITLE, "latest": _LATEST,
                "body": {"type": "string", "description": "The text to add"}},
    required=["body"])
DELETE = FunctionSchema(
    name="delete_note", description="Delete one of the user's notes: by title, or the latest one.",
    properties={"title": _TITLE, "latest": _LATEST}, required=[])
SEARCH = FunctionSchema(
    name="search_notes", description="Find the user's notes that mention something.",
    properties={"query": {"type": "string", "description": "What to look for"}}, required=["query"])

TOOLS = ToolsSchema(standard_tools=[CREATE, LIST, READ, UPDATE, DELETE, SEARCH])


def _text(args: dict[str, Any], name: str) -> str:
    value = args.get(name)
    return "" if value is None else str(value)


def register_notes_tools(llm: LLMService, *, user_id: int, session_id: str) -> None:
    """Bind the notes tool to this session's user (one user can never reach another's notes)."""

    def handler(call: Callable[[dict[str, Any]], dict[str, Any]]):
        async def run(params: FunctionCallParams) -> None:
            args: dict[str, Any] = dict(params.arguments or {})
            await params.result_callback(await database_sync_to_async(call)(args))
        return run

    handlers = {
        "create_note": lambda a: notes.create_note(user_id, _text(a, "title"), _text(a, "body"), session_id),
        "list_notes": lambda a: notes.list_notes(user_id),
        "read_note": lambda a: notes.read_note(user_id, a.get("id"), _text(a, "title"), latest=bool(a.get("latest"))),
        "update_note": lambda a: notes.update_note(user_id, _text(a, "title"), _text(a, "body"),
                                                   note_id=a.get("id"), latest=bool(a.get("latest"))),
        "delete_note": lambda a: notes.delete_note(user_id, _text(a, "title"), note_id=a.get("id"),
                                                   latest=bool(a.get("latest"))),
        "search_notes": lambda a: notes.search_notes(user_id, _text(a, "query")),
    }
    for name, call in handlers.items():
        # Not cancelled when the user talks over the bot: a note asked for is a note kept.
        llm.register_function(name, handler(call), cancel_on_interruption=False)
