"""The still picture a bot shows as its camera when a join asks for `voiceOnly: false`.

Drawn here rather than shipped as a file: a disc in the assistant's colour on
a plain background, small enough that publishing it costs next to nothing.
Pipecat repeats a non-live image at the video framerate by itself.
"""
from __future__ import annotations

import hashlib

import numpy as np
from pipecat.frames.frames import OutputImageRawFrame

SIZE = 160  # pixels, square
FRAMERATE = 1  # a still picture needs no more


def avatar_frame(name: str) -> OutputImageRawFrame:
    """An RGB image of a disc whose colour is derived from the assistant's `name`."""
    digest = hashlib.sha256(name.encode()).digest()
    colour = np.array([64 + digest[0] % 160, 64 + digest[1] % 160, 64 + digest[2] % 160], dtype=np.uint8)
    y, x = np.mgrid[0:SIZE, 0:SIZE]
    inside = (x - SIZE / 2) ** 2 + (y - SIZE / 2) ** 2 <= (SIZE * 0.4) ** 2
    image = np.full((SIZE, SIZE, 3), 240, dtype=np.uint8)
    image[inside] = colour
    return OutputImageRawFrame(image=image.tobytes(), size=(SIZE, SIZE), format="RGB")
