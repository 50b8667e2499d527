"""The end-of-call report: what a session was, from its stored events, plus a short summary."""
from __future__ import annotations

from typing import Any

from voicesessions.models import SessionEvent, VoiceEventType, VoiceSession

SUMMARY_PROMPT = ("Summarise this phone call between a user and an AI assistant in at most two short sentences, "
                  "for the assistant's owner: what the user wanted and what was done. Plain text only.")
MAX_SUMMARY_INPUT_CHARS = 12000  # the latest part of a long call: what fits a small model's context


def build(session_id: Any) -> dict[str, Any]:
    """The report's data (blocking ORM), without the summary: `transcript_text` gives the LLM its input."""
    session = VoiceSession.objects.get(pk=session_id)
    transcript: list[dict[str, Any]] = []
    calls: dict[str, dict[str, Any]] = {}
    events = SessionEvent.objects.filter(session=session, type__in=[
        VoiceEventType.TRANSCRIPT, VoiceEventType.TOOL_CALL, VoiceEventType.TOOL_RESULT]).order_by("id")
    for event in events.iterator():
        data = event.payload or {}
        if event.type == VoiceEventType.TRANSCRIPT:
            if data.get("final") and data.get("text"):
                line = {"role": data.get("role"), "text": data["text"], "at": event.created_at.isoformat()}
                if data.get("kind"):
                    line["kind"] = data["kind"]
                transcript.append(line)
        else:
            call = calls.setdefault(str(data.get("toolCallId") or event.pk), {"name": data.get("name")})
            if event.type == VoiceEventType.TOOL_CALL:
                call.update(arguments=data.get("arguments"), calledAt=event.created_at.isoformat())
            else:
                call["result"] = data.get("result")
    started = session.connected_at or session.started_at or session.created_at
    ended = session.ended_at
    duration = round((ended - started).total_seconds(), 1) if ended and started else None
    return {
        "startedAt": started.isoformat() if started else None,
        "endedAt": ended.isoformat() if ended else None,
        "durationSeconds": duration,
        "endedReason": session.end_reason,
        "transcript": transcript,
        "toolCalls": list(calls.values()),
        # What is known of usage: time and turns (token counts are not kept per session).
        "usage": {"durationSeconds": duration,
                  "userTurns": sum(1 for line in transcript if line["role"] == "user"),
                  "assistantTurns": sum(1 for line in transcript if line["role"] == "assistant"),
                  "toolCalls": len(calls)},
        "summary": "",
    }


def transcript_text(report: dict[str, Any]) -> str:
    """The call as lines the summarising model reads ("User: ...", "Assistant: ...")."""
    lines = [f"{'User' if line['role'] == 'user' else 'Assistant'}: {line['text']}" for line in report["transcript"]]
    return "\n".join(lines)[-MAX_SUMMARY_INPUT_CHARS:]
