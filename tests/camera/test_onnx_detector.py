"""The optional ONNX person detector through cv2.dnn, with a tiny model the test builds itself.

The model is a real ONNX graph in the YOLOv8 export layout, (1, 4 + classes,
candidates), with two fixed candidate boxes — one in the left half of the
picture, one in the right — whose person score is the brightness of that
half. A bright figure on a dark floor therefore "is detected" where it
stands, which exercises loading, preprocessing, decoding, thresholding, NMS
and the scaling back to processing pixels without any downloaded weights.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

onnx = pytest.importorskip("onnx", reason="the onnx package builds the test model (pip install -e '.[dev]')")
from onnx import TensorProto, helper  # noqa: E402

from edge_agent.camera.config import CameraConfig, OnnxConfig  # noqa: E402
from edge_agent.cli import main  # noqa: E402
from edge_agent.camera.onnx_detector import OnnxModelError, OnnxPersonDetector  # noqa: E402
from edge_agent.camera.pipeline import CountingPipeline  # noqa: E402
from tests.camera.test_cli import write_config  # noqa: E402

INPUT_PX = 64
#: The two candidate boxes (centre x, centre y, width, height) in model input pixels.
BOXES = [(16.0, 32.0, 20.0, 40.0), (48.0, 32.0, 20.0, 40.0)]


def build_model(path: Path) -> Path:
    boxes = np.asarray(BOXES, dtype=np.float32).T.reshape(1, 4, 2)
    nodes = [
        helper.make_node("ReduceMean", ["images"], ["gray"], axes=[1], keepdims=1),
        helper.make_node("AveragePool", ["gray"], ["halves"], kernel_shape=[INPUT_PX, INPUT_PX // 2],
                         strides=[INPUT_PX, INPUT_PX // 2]),  # fmt: skip
        helper.make_node("Reshape", ["halves", "score_shape"], ["scores"]),
        helper.make_node("Concat", ["boxes", "scores"], ["output0"], axis=1),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny-person-detector",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, INPUT_PX, INPUT_PX])],
        [helper.make_tensor_value_info("output0", TensorProto.FLOAT, [1, 5, 2])],
        initializer=[
            helper.make_tensor("boxes", TensorProto.FLOAT, [1, 4, 2], boxes.flatten().tolist()),
            helper.make_tensor("score_shape", TensorProto.INT64, [3], [1, 1, 2]),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


@pytest.fixture(scope="module")
def model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_model(tmp_path_factory.mktemp("onnx") / "tiny.onnx")


def picture(bright_half: str | None) -> np.ndarray:
    image = np.full((240, 320, 3), 20, np.uint8)
    if bright_half == "left":
        image[:, :160] = 230
    elif bright_half == "right":
        image[:, 160:] = 230
    return image


def test_detections_come_from_the_model_and_land_in_processing_pixels(model_path):
    detector = OnnxPersonDetector(OnnxConfig(model_path=model_path, input_px=INPUT_PX, min_score=0.5), 40, 60)
    assert detector.detect(picture(None)) == []
    (left,) = detector.detect(picture("left"))
    assert (left.x, left.y, left.width_px, left.height_px) == pytest.approx((80, 120, 100, 150))
    (right,) = detector.detect(picture("right"))
    assert right.x == pytest.approx(240)


def test_the_pipeline_uses_the_model_when_a_path_is_configured(model_path):
    camera = CameraConfig(onnx=OnnxConfig(model_path=model_path, input_px=INPUT_PX, min_score=0.5))
    pipeline = CountingPipeline(camera, 320, 240, fps=10.0)
    assert isinstance(pipeline.detector, OnnxPersonDetector)
    pipeline.process(picture("right"), 0.0)
    assert [round(d.x) for d in pipeline.last_detections] == [240]


def test_a_file_that_is_not_a_model_is_a_clear_error(tmp_path):
    bogus = tmp_path / "model.onnx"
    bogus.write_bytes(b"this is not protobuf")
    with pytest.raises(OnnxModelError, match="cannot load"):
        OnnxPersonDetector(OnnxConfig(model_path=bogus), 40, 60)


def test_calibrate_with_a_broken_model_exits_with_the_fix(tmp_path, capsys):
    bogus = tmp_path / "model.onnx"
    bogus.write_bytes(b"this is not protobuf")
    video = tmp_path / "one.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (64, 48))
    writer.write(np.zeros((48, 64, 3), np.uint8))
    writer.release()
    config = write_config(tmp_path, onnx={"model_path": str(bogus)})
    assert main(["--config", str(config), "calibrate", "--source", str(video), "--seconds", "1"]) == 2
    assert "camera.onnx.model_path" in capsys.readouterr().err
