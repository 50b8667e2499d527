"""A bare Pipecat voice bot: the yardstick bench_capacity.py measures the product against (issue 14).

The same transport (SmallWebRTC on aiortc) and the same kind of models as a
hosted-model worker (Silero VAD, the smart-turn v3 model, OpenAI's STT, LLM and
TTS pointed at tests/fakes/openai_api.py), in Pipecat's own classes as its
examples put them together, and nothing of ours: no Django, no job queue, no
event forwarding, no database writes, no guards. One process, one pipeline per
WebRTC offer, until the peer leaves.

    python bench/bare_pipecat.py --port P --base-url http://127.0.0.1:Q/v1 --api-key K

It answers POST /api/voice/webrtc/offer ({"sdp", "type"} -> the answer), the path
voicebot/peer.py posts to, so the same load generator talks to both.
"""
from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from typing import Any

from aiohttp import web
from pipecat.audio.turn.smart_turn.local_smart_turn_v3 import LocalSmartTurnAnalyzerV3
from pipecat.audio.vad.silero import SileroVADAnalyzer
from pipecat.audio.vad.vad_analyzer import VADParams
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.worker import PipelineParams, PipelineWorker
from pipecat.processors.aggregators.llm_context import LLMContext
from pipecat.processors.aggregators.llm_response_universal import LLMContextAggregatorPair, LLMUserAggregatorParams
from pipecat.services.openai.llm import OpenAILLMService
from pipecat.services.openai.stt import OpenAISTTService
from pipecat.services.openai.tts import OpenAITTSService
from pipecat.transports.base_transport import TransportParams
from pipecat.transports.smallwebrtc.connection import SmallWebRTCConnection
from pipecat.transports.smallwebrtc.transport import SmallWebRTCTransport
from pipecat.turns.user_stop.turn_analyzer_user_turn_stop_strategy import TurnAnalyzerUserTurnStopStrategy
from pipecat.turns.user_turn_strategies import UserTurnStrategies
from pipecat.workers.runner import WorkerRunner

PROMPT = "You are a helpful voice assistant. Answer in one or two short sentences."


def pipeline_for(connection: SmallWebRTCConnection, base_url: str, api_key: str) -> PipelineWorker:
    transport = SmallWebRTCTransport(webrtc_connection=connection,
                                     params=TransportParams(audio_in_enabled=True, audio_out_enabled=True))
    stt = OpenAISTTService(api_key=api_key, base_url=base_url,
                           settings=OpenAISTTService.Settings(model="gpt-4o-transcribe"))
    llm = OpenAILLMService(api_key=api_key, base_url=base_url,
                           settings=OpenAILLMService.Settings(model="gpt-4.1-mini", system_instruction=PROMPT))
    tts = OpenAITTSService(api_key=api_key, base_url=base_url, sample_rate=24000,
                           settings=OpenAITTSService.Settings(model="gpt-4o-mini-tts", voice="alloy"))
    # The product's VAD stop (0.2 s) and smart-turn wait (1 s), so only the machinery differs.
    user, assistant = LLMContextAggregatorPair(LLMContext(), user_params=LLMUserAggregatorParams(
        vad_analyzer=SileroVADAnalyzer(params=VADParams(stop_secs=0.2)),
        user_turn_strategies=UserTurnStrategies(stop=[TurnAnalyzerUserTurnStopStrategy(
            turn_analyzer=LocalSmartTurnAnalyzerV3())])))
    pipeline = Pipeline([transport.input(), stt, user, llm, tts, transport.output(), assistant])
    worker = PipelineWorker(pipeline, params=PipelineParams(audio_in_sample_rate=16000, audio_out_sample_rate=24000),
                            enable_rtvi=False, idle_timeout_secs=None)

    @transport.event_handler("on_client_disconnected")
    async def _gone(_t: Any, _c: Any) -> None:
        await worker.cancel()

    return worker


def app(base_url: str, api_key: str) -> web.Application:
    tasks: set[asyncio.Task] = set()

    async def offer(request: web.Request) -> web.Response:
        body = await request.json()
        connection = SmallWebRTCConnection(ice_servers=[])
        await connection.initialize(sdp=body["sdp"], type=body["type"])
        worker = pipeline_for(connection, base_url, api_key)
        runner = WorkerRunner(handle_sigint=False)
        await runner.add_workers(worker)
        task = asyncio.get_running_loop().create_task(runner.run())
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        return web.json_response(connection.get_answer())

    application = web.Application()
    application.router.add_post("/api/voice/webrtc/offer", offer)
    return application


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--api-key", required=True)
    args = parser.parse_args(argv)
    from loguru import logger

    logger.remove()
    logger.add(sys.stderr, level="WARNING")  # as the product's worker logs Pipecat at INFO+: no DEBUG flood
    logging.basicConfig(level=logging.WARNING)
    print(f"bare pipecat listening on http://127.0.0.1:{args.port}", flush=True)
    web.run_app(app(args.base_url, args.api_key), host="127.0.0.1", port=args.port, print=None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
