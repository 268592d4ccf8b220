"""The inference callable a served model runs: Triton requests in, segmentation outputs out.

Triton's dynamic batcher hands over several requests at once (frames of equal size batch
together); they are segmented in one Segmenter.segment_batch call, so equal sizes share one
backend call. A request that cannot be served raises RequestRefused: PyTriton turns it into a
Triton error for the requests of that execute call, and the server goes on serving.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from ocr_deploy.preprocess import FrameError
from ocr_deploy.segmenter import Segmenter
from ocr_deploy.serving.protocol import (
    INPUT_ENCODED,
    INPUT_IMAGE,
    OUTPUT_FRACTIONS,
    OUTPUT_LABELS,
    OUTPUT_OVERLAY,
    OVERLAY_PARAMETER,
    ServingError,
    labels_dtype,
)
from ocr_deploy.sources.headers import header_size, too_many_pixels

OVERLAY_JPEG_QUALITY = 85


class RequestRefused(ServingError):
    """A request the server will not segment; the message goes back to the client."""


class TritonRequest(Protocol):
    """What PyTriton's Request gives: inputs by name, and the request's parameters."""

    data: Mapping[str, np.ndarray]
    parameters: Mapping[str, Any] | None


@dataclass(frozen=True)
class _Asked:
    frames: list[np.ndarray]
    overlay: bool


class SegmentHandler:
    """One model instance's callable. `max_pixels` None: no limit."""

    def __init__(self, segmenter: Segmenter, *, max_pixels: int | None):
        self.segmenter = segmenter
        self.max_pixels = max_pixels
        self.dtype = labels_dtype(segmenter.meta.num_classes)

    def __call__(self, requests: Sequence[TritonRequest]) -> list[dict[str, np.ndarray]]:
        asked = [self._read(request) for request in requests]  # refuse before any work
        frames = [frame for item in asked for frame in item.frames]
        # Equal sizes next to each other: Segmenter.infer batches consecutive equal sizes.
        order = sorted(range(len(frames)), key=lambda index: frames[index].shape)
        try:
            done = self.segmenter.segment_batch([frames[index] for index in order])
        except FrameError as error:  # too small for the network, ...
            raise RequestRefused(str(error)) from None
        results = [done[0]] * len(frames)
        for position, index in enumerate(order):
            results[index] = done[position]
        responses, start = [], 0
        for item in asked:
            mine = results[start:start + len(item.frames)]
            start += len(item.frames)
            responses.append(self._response(mine, overlay=item.overlay))
        return responses

    def _response(self, results: list, *, overlay: bool) -> dict[str, np.ndarray]:
        # Frames of one request have one size (one tensor), so their labels stack.
        response = {
            OUTPUT_LABELS: np.stack([result.labels for result in results]).astype(self.dtype, copy=False),
            OUTPUT_FRACTIONS: np.stack([result.class_fractions for result in results]).astype(np.float32),
        }
        if overlay:
            response[OUTPUT_OVERLAY] = np.array([[_jpeg(result.overlay)] for result in results], dtype=object)
        return response

    def _read(self, request: TritonRequest) -> _Asked:
        image, encoded = request.data.get(INPUT_IMAGE), request.data.get(INPUT_ENCODED)
        if (image is None) == (encoded is None):
            raise RequestRefused(f"send either {INPUT_IMAGE!r} (uint8 [N, H, W, 3] BGR) or "
                                 f"{INPUT_ENCODED!r} (BYTES [N, 1], JPEG or PNG), not "
                                 + ("both" if image is not None else "neither"))
        frames = list(image) if image is not None else [self._decode(blob) for blob in encoded.reshape(-1)]
        for frame in frames:
            refused = too_many_pixels(frame.shape[:2], self.max_pixels)
            if refused:
                raise RequestRefused(f"frame {refused}")
        if len({frame.shape for frame in frames}) > 1:  # the labels of a request are one tensor
            raise RequestRefused(f"the {len(frames)} images of one request differ in size; send "
                                 "images of different sizes in separate requests")
        parameters = request.parameters or {}
        return _Asked(frames, overlay=_truthy(parameters.get(OVERLAY_PARAMETER)))

    def _decode(self, blob: object) -> np.ndarray:
        import cv2

        data = bytes(blob) if isinstance(blob, (bytes, bytearray, memoryview)) else None
        if not data:
            raise RequestRefused(f"{INPUT_ENCODED!r} must hold the bytes of a JPEG or PNG file")
        refused = too_many_pixels(header_size(data[:65536]), self.max_pixels)
        if refused:  # read from the header: a bomb is refused before it is decoded
            raise RequestRefused(f"encoded image {refused}")
        frame = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        if frame is None:
            raise RequestRefused(f"the {len(data)} bytes sent as {INPUT_ENCODED!r} are not an image "
                                 "OpenCV can decode; send a JPEG or PNG file")
        return frame


def _truthy(value: object) -> bool:
    return value is True or (isinstance(value, str) and value.lower() in ("1", "true", "yes"))


def _jpeg(image: np.ndarray) -> bytes:
    import cv2

    ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, OVERLAY_JPEG_QUALITY])
    if not ok:
        raise ServingError("OpenCV could not encode the overlay as JPEG")
    return data.tobytes()
