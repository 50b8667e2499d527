"""The LLM's tools: the notes tool (create, list, read the user's notes)."""
from __future__ import annotations

from typing import Any

from channels.db import database_sync_to_async
from pipecat.adapters.llm.schemas.function_schema import FunctionSchema
from pipecat.adapters.llm.schemas.tools_schema import ToolsSchema
from pipecat.services.llm_service import FunctionCallParams, LLMService

from . import notes

CREATE = FunctionSchema(
    name="create_note", description="Save a note for the user.",
    properties={"title": {"type": "string", "description": "A short title"},
                "body": {"type": "string", "description": "The note's text"}},
    required=["title"])
LIST = FunctionSchema(name="list_notes", description="List the titles of the user's notes.", properties={},
                      required=[])
READ = FunctionSchema(
    name="read_note", description="Read one of the user's notes, by title.",
    properties={"title": {"type": "string", "description": "The note's title"}}, required=["title"])

TOOLS = ToolsSchema(standard_tools=[CREATE, LIST, READ])


def register_notes_tools(llm: LLMService, *, user_id: int, session_id: str) -> None:
    """Bind the notes tool to this session's user (one user can never read another's notes)."""

    async def create(params: FunctionCallParams) -> None:
        args: dict[str, Any] = dict(params.arguments or {})
        result = await database_sync_to_async(notes.create_note)(
            user_id, str(args.get("title", "")), str(args.get("body", "")), session_id)
        await params.result_callback(result)

    async def list_(params: FunctionCallParams) -> None:
        await params.result_callback(await database_sync_to_async(notes.list_notes)(user_id))

    async def read(params: FunctionCallParams) -> None:
        args = dict(params.arguments or {})
        await params.result_callback(
            await database_sync_to_async(notes.read_note)(user_id, args.get("id"), args.get("title")))

    # Not cancelled when the user talks over the bot: a note asked for is a note kept.
    llm.register_function("create_note", create, cancel_on_interruption=False)
    llm.register_function("list_notes", list_, cancel_on_interruption=False)
    llm.register_function("read_note", read, cancel_on_interruption=False)
