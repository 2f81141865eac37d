"""An optional neural person detector, run by OpenCV's own DNN module on the CPU.

Where a site is too crowded for blob geometry and the device is fast enough,
an installer can point ``camera.onnx.model_path`` at an ONNX person detector.
The expected output is the YOLOv8/YOLO11 export layout, ``(1, 4 + classes,
candidates)`` with centre-x, centre-y, width, height in input pixels followed
by one score per class; boxes of the person class above ``min_score`` are
kept after non-maximum suppression. No extra runtime is needed: ``cv2.dnn``
reads ONNX directly.
"""

from __future__ import annotations

import cv2
import numpy as np

from edge_agent.camera.config import OnnxConfig
from edge_agent.camera.detect import Detection

#: Boxes overlapping more than this (intersection over union) are one person.
NMS_IOU = 0.45


class OnnxModelError(Exception):
    """The configured model cannot be loaded or does not produce detector output."""


class OnnxPersonDetector:
    """Person boxes from an ONNX model, as detections in processing pixels."""

    def __init__(self, config: OnnxConfig, person_width_px: float, person_height_px: float) -> None:
        assert config.model_path is not None
        try:
            self._net = cv2.dnn.readNetFromONNX(str(config.model_path))
        except cv2.error as exc:
            raise OnnxModelError(f"camera.onnx.model_path {config.model_path}: cannot load ({exc.msg.strip()})") from None
        self._config = config
        self.person_width_px = person_width_px
        self.person_height_px = person_height_px

    def detect(self, frame: np.ndarray) -> list[Detection]:
        size = self._config.input_px
        height_px, width_px = frame.shape[:2]
        blob = cv2.dnn.blobFromImage(frame, 1 / 255.0, (size, size), swapRB=True, crop=False)
        self._net.setInput(blob)
        output = np.asarray(self._net.forward())
        if output.ndim != 3 or output.shape[1] < 5 + self._config.person_class:
            raise OnnxModelError(f"camera.onnx: expected output (1, 4 + classes, candidates), got {output.shape}")
        rows = output[0].T
        scores = rows[:, 4 + self._config.person_class]
        keep = scores >= self._config.min_score
        if not keep.any():
            return []
        rows, scores = rows[keep], scores[keep]
        sx, sy = width_px / size, height_px / size
        boxes = [
            [float((cx - w / 2) * sx), float((cy - h / 2) * sy), float(w * sx), float(h * sy)]
            for cx, cy, w, h in rows[:, :4]
        ]
        chosen = cv2.dnn.NMSBoxes(boxes, scores.astype(float).tolist(), self._config.min_score, NMS_IOU)
        return [
            Detection(left + w / 2, top + h / 2, w, h)
            for left, top, w, h in (boxes[int(i)] for i in np.asarray(chosen).reshape(-1))
        ]
