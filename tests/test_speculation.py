"""An answer begun while the turn model waits on a statement (voicebot/turnend.py), in a real
Pipecat pipeline: the user aggregator with our stop strategy, VoiceLLMService against the
checking fake of OpenAI's API, and a sink standing for the TTS. What the sink receives is
what the user would hear."""
from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from pipecat.frames.frames import (Frame, LLMTextFrame, TranscriptionFrame, VADUserStartedSpeakingFrame,
                                   VADUserStoppedSpeakingFrame)
from pipecat.pipeline.pipeline import Pipeline
from pipecat.workers.runner import WorkerRunner
from pipecat.pipeline.worker import PipelineWorker
from pipecat.processors.aggregators.llm_context import LLMContext
from pipecat.processors.aggregators.llm_response_universal import LLMContextAggregatorPair, LLMUserAggregatorParams
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
from pipecat.turns.speculation_gate import SpeculationState
from pipecat.turns.user_turn_strategies import UserTurnStrategies

from tests.fakes.openai_api import FakeOpenAI
from tests.test_turnend import SILENCE_RUNS_OUT, Unfinished
from tests.waiting import await_until
from voicebot.services.llm import VoiceLLMService
from voicebot.turnend import QuestionEndsTurnStopStrategy

KEY = "sk-fake-speculation-key"


class Heard(FrameProcessor):
    """The end of the pipeline: what reaches the TTS, i.e. what the user would hear."""

    def __init__(self) -> None:
        super().__init__(name="Heard")
        self.texts: list[str] = []

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, LLMTextFrame):
            self.texts.append(frame.text)
        await self.push_frame(frame, direction)

    @property
    def spoken(self) -> str:
        return "".join(self.texts).strip()


class Call:
    """One user turn's pipeline, running until `close`."""

    def __init__(self, fake: FakeOpenAI, llm: VoiceLLMService | None = None) -> None:
        self.context = LLMContext()
        self.strategy = QuestionEndsTurnStopStrategy(turn_analyzer=Unfinished(), speculate=True)
        user, assistant = LLMContextAggregatorPair(self.context, user_params=LLMUserAggregatorParams(
            user_turn_strategies=UserTurnStrategies(stop=[self.strategy])))
        self.llm = llm or VoiceLLMService(base_url=fake.url, api_key=KEY, model="gpt-4.1-mini",
                                          system_prompt="Be brief.", notes_router=False)
        self.heard = Heard()
        self.worker = PipelineWorker(Pipeline([user, self.llm, self.heard, assistant]), cancel_on_idle_timeout=False)
        self.fake = fake

    async def __aenter__(self) -> "Call":
        started = asyncio.Event()

        @self.worker.event_handler("on_pipeline_started")
        async def _started(_worker: Any, _frame: Any) -> None:
            started.set()

        runner = WorkerRunner(handle_sigint=False)  # as voicebot/session.py runs a session's pipeline
        await runner.add_workers(self.worker)
        self._run = asyncio.create_task(runner.run())
        await asyncio.wait_for(started.wait(), 30)
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.worker.cancel()
        await asyncio.wait({self._run}, timeout=30)

    async def send(self, *frames: Frame) -> None:
        for frame in frames:
            await self.worker.queue_frame(frame)

    def requests(self) -> list[dict]:
        return [r.json for r in self.fake.requests_to("/v1/chat/completions", ok=True)]

    def held_whole_answer(self) -> bool:
        """The LLM's gate holds an answer to its end (the speculation has answered; nothing spoken)."""
        gate = self.llm._speculation_gate  # noqa: SLF001 - Pipecat's own record of what it holds
        from pipecat.frames.frames import LLMFullResponseEndFrame

        return gate.state == SpeculationState.HOLDING and gate._buffer.has_frame(LLMFullResponseEndFrame)  # noqa: SLF001


def _stop() -> VADUserStoppedSpeakingFrame:
    return VADUserStoppedSpeakingFrame(stop_secs=0.2, timestamp=time.time())


def _heard(text: str) -> TranscriptionFrame:
    return TranscriptionFrame(text, "user", "2026-12-05T00:00:00Z")


@pytest.fixture
def fake():
    with FakeOpenAI(api_key=KEY) as api:
        yield api


def test_the_answer_is_made_while_the_silence_runs_out_and_spoken_once_the_turn_ends(fake):
    fake.reply_with("A short walk and an early night will help.")

    async def call() -> None:
        async with Call(fake) as c:
            await c.send(VADUserStartedSpeakingFrame(), _stop(), _heard("I feel a bit tired today."))
            await await_until(c.held_whole_answer, 30, "the answer made ahead, held")
            assert c.heard.spoken == ""  # the turn model still waits: nothing is spoken yet
            assert c.requests()[0]["messages"][-1] == {"role": "user", "content": "I feel a bit tired today."}
            assert [m["role"] for m in c.context.get_messages()] == []  # the turn is not in the conversation yet

            await c.send(SILENCE_RUNS_OUT)
            await await_until(lambda: c.heard.spoken, 30, "the held answer spoken")
            assert c.heard.spoken == "A short walk and an early night will help."
            await await_until(lambda: len(c.context.get_messages()) == 2, 30, "the turn in the conversation")
            assert c.context.get_messages() == [
                {"role": "user", "content": "I feel a bit tired today."},
                {"role": "assistant", "content": "A short walk and an early night will help."}]
            assert len(c.requests()) == 1  # answered once: the turn's end asked for nothing more
            assert c.strategy.speculations == {"started": 1, "confirmed": 1, "withdrawn": 0}

    asyncio.run(call())


def test_when_the_user_goes_on_the_early_answer_is_never_heard(fake):
    fake.reply_with("Rest is good for you.", "Then a quiet evening and bed by ten will help.")

    async def call() -> None:
        async with Call(fake) as c:
            await c.send(VADUserStartedSpeakingFrame(), _stop(), _heard("I feel a bit tired today,"))
            await await_until(c.held_whole_answer, 30, "the first answer made ahead, held")
            await c.send(VADUserStartedSpeakingFrame(), _stop(), _heard("because I slept badly."))
            await await_until(lambda: len(c.requests()) == 2, 30, "the whole turn answered ahead")
            await c.send(SILENCE_RUNS_OUT)
            await await_until(lambda: len(c.context.get_messages()) == 2, 30, "the turn in the conversation")
            assert c.heard.spoken == "Then a quiet evening and bed by ten will help."
            assert c.requests()[1]["messages"][-1]["content"] == "I feel a bit tired today, because I slept badly."
            assert c.context.get_messages()[0] == {"role": "user",
                                                   "content": "I feel a bit tired today, because I slept badly."}
            assert "Rest is good" not in str(c.context.get_messages())
            assert c.strategy.speculations == {"started": 2, "confirmed": 1, "withdrawn": 1}

    asyncio.run(call())


def test_a_tool_is_run_only_once_the_turn_has_ended_and_only_once(fake):
    """A speculative answer that calls a tool is withdrawn (its side effect could not be undone);
    the turn's end asks again and the tool runs then."""
    fake.call_tool_next("remember", {"text": "the plumber comes Thursday"})
    fake.call_tool_next("remember", {"text": "the plumber comes Thursday"})
    fake.reply_with("Noted: the plumber comes Thursday.")
    runs: list[dict] = []

    async def call() -> None:
        from pipecat.adapters.llm.schemas.function_schema import FunctionSchema
        from pipecat.adapters.llm.schemas.tools_schema import ToolsSchema

        async with Call(fake) as c:
            async def remember(params: Any) -> None:
                runs.append(dict(params.arguments))
                await params.result_callback({"ok": True})

            c.llm.register_function("remember", remember)
            c.context.set_tools(ToolsSchema(standard_tools=[FunctionSchema(
                name="remember", description="Save a note.", properties={"text": {"type": "string"}},
                required=["text"])]))
            await c.send(VADUserStartedSpeakingFrame(), _stop(), _heard("Jot down that the plumber comes Thursday."))
            await await_until(lambda: c.strategy.speculations["started"] == 1 and c.strategy._speculation is None,
                              30, "the speculative tool call withdrawn")
            assert runs == []  # nothing done for a turn that has not ended
            await c.send(SILENCE_RUNS_OUT)
            await await_until(lambda: c.heard.spoken, 30, "the answer after the tool")
            assert runs == [{"text": "the plumber comes Thursday"}]
            assert c.heard.spoken == "Noted: the plumber comes Thursday."
            assert len(c.requests()) == 3  # withdrawn, the tool call, the answer with its result

    asyncio.run(call())
