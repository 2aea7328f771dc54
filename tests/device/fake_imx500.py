"""A stand-in Raspberry Pi AI Camera: Picamera2's `IMX500` class and the `Picamera2` of that camera,
with the frame metadata layout Picamera2 documents (picamera2/devices/imx500/imx500.py):

- `CnnOutputTensor`: every output tensor's float32 values, each flattened in Fortran order;
- `CnnOutputTensorInfo`: libcamera's `CnnOutputTensorInfoExported` struct as bytes (network name,
  tensor count, per tensor its element count and dimensions, and the sensor's 8-bit frame counter);
- `CnnKpiInfo`: (DNN runtime, DSP runtime) in microseconds;
- tensor injection: planar 8-bit rows padded to 32 bytes and heights to 2 lines, p - 128 for a
  signed input, handed over as a file descriptor; its output arrives on the frame whose counter
  `get_injection_cmp_frm()` returned;
- `Picamera2.global_camera_info()`: one dict per attached camera ("Model", "Num", "Id", ...), the
  AI Camera's Model being "imx500" (`FakeSensor.cameras`).

What the "sensor" computes is honest about what it is: no Sony software exists here, so the
network is the bundle's real int8 TFLite model (the TFLite path's quantized model), fed what the
sensor feeds (pixels as p/128 - 1, RGB at the network's input size) and read as the sensor reports
it (the softmax as 8-bit levels). What the real MCT model does on the real sensor is measured
elsewhere: the simulated-sensor accuracy in bundle.json (convert --imx500, Sony's venv), and
`verify --accelerator imx500` on a Pi.
"""

from __future__ import annotations

import ctypes
import os
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

MAX_NUM_TENSORS = 16
MAX_NUM_DIMENSIONS = 16


class OutputTensorInfo(ctypes.LittleEndianStructure):
    _fields_ = [("tensor_data_num", ctypes.c_uint32), ("num_dimensions", ctypes.c_uint32),
                ("size", ctypes.c_uint16 * MAX_NUM_DIMENSIONS)]


class CnnOutputTensorInfoExported(ctypes.LittleEndianStructure):
    _fields_ = [("network_name", ctypes.c_char * 64), ("num_tensors", ctypes.c_uint32),
                ("info", OutputTensorInfo * MAX_NUM_TENSORS), ("frameCount", ctypes.c_uint8)]


def tflite_sensor_network(model: Path) -> Callable[[np.ndarray], np.ndarray]:
    """RGB uint8 (H, W, 3) at the input size -> the scores the sensor would report, from a real int8 .tflite
    fed p/128 - 1 (quantized with the model's own input parameters) and read as 8-bit levels."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(model))
    interpreter.allocate_tensors()
    # The class scores: the smallest output (a convert bundle's model.tflite also outputs its pooled features
    # for "unknown"; the IMX500 model MCT makes has the scores alone).
    inp = interpreter.get_input_details()[0]
    out = min(interpreter.get_output_details(), key=lambda detail: int(np.prod(detail["shape"])))
    in_scale, in_zero = inp["quantization"]
    out_scale, out_zero = out["quantization"]

    def run(rgb: np.ndarray) -> np.ndarray:
        x = (rgb.astype(np.float32) - 128.0) / 128.0
        q = np.clip(np.round(x / in_scale + in_zero), *((0, 255) if inp["dtype"] == np.uint8 else (-128, 127)))
        interpreter.set_tensor(inp["index"], q.astype(inp["dtype"])[np.newaxis])
        interpreter.invoke()
        scores = (interpreter.get_tensor(out["index"]).astype(np.float32).reshape(-1) - out_zero) * out_scale
        return np.round(np.clip(scores, 0, 1) * 255) / 255

    return run


class FakeRequest:
    def __init__(self, image: np.ndarray, metadata: dict) -> None:
        self.image, self.metadata, self.released = image, metadata, False

    def make_array(self, stream: str) -> np.ndarray:
        assert stream == "main"
        return self.image

    def get_metadata(self) -> dict:
        return self.metadata

    def release(self) -> None:
        self.released = True


class FakeSensor:
    """What the IMX500 and its Picamera2 share: the scene, the network, the frame counter."""

    def __init__(self, scenes: list[np.ndarray], network: Callable[[np.ndarray], np.ndarray], input_size: int,
                 loading_frames: int = 2, output_shape: tuple[int, ...] | None = None) -> None:
        self.scenes, self.network, self.input_size = scenes, network, input_size
        self.loading_frames = loading_frames  # frames with no output while the firmware loads
        self.output_shape = output_shape
        self.counter = 0
        self.captured = 0
        self.injected: np.ndarray | None = None
        self.injected_from: int | None = None
        self.scored_frames: list[np.ndarray] = []  # every frame that carried an output, in order
        self.scored_scenes: list[int] = []  # and the index of the scene each one showed
        self.scored_inputs: list[np.ndarray] = []  # and what the network was fed for it (RGB at its input size)
        self.network_file: str | None = None
        self.tensor_injection = False
        # Picamera2.global_camera_info(): what libcamera lists (an AI Camera on a Pi 5's first port)
        self.cameras: list[dict] = [{"Model": "imx500", "Location": 2, "Rotation": 0, "Num": 0,
                                     "Id": "/base/axi/pcie@120000/rp1/i2c@88000/imx500@1a"}]


class FakeIMX500:
    """picamera2.devices.IMX500's API as edgepipe uses it."""

    def __init__(self, sensor: FakeSensor, network_file: str, camera_id: str = "", tensor_injection: bool = False):
        if not Path(network_file).is_file():
            raise RuntimeError(f"Firmware file {network_file} does not exist.")
        self.sensor = sensor
        sensor.network_file, sensor.tensor_injection = network_file, tensor_injection
        self.camera_num = 0
        size = sensor.input_size
        self.config = {"network_file": network_file, "input_tensor_size": (size, size),
                       "input_tensor": {"width": size, "height": size, "input_format": "RGB", "dtype": "signed"}}

    def get_outputs(self, metadata: dict, add_batch: bool = False) -> list[np.ndarray] | None:
        output_tensor = metadata.get("CnnOutputTensor")
        if not output_tensor:
            return None
        values = np.fromiter(output_tensor, dtype=np.float32)
        outputs, offset = [], 0
        for shape in self.get_output_shapes(metadata):
            size = int(np.prod(shape))
            outputs.append(values[offset:offset + size].reshape(shape, order="F"))
            offset += size
        return outputs

    def get_output_shapes(self, metadata: dict) -> list[tuple[int, ...]]:
        info = metadata.get("CnnOutputTensorInfo")
        if not info:
            return []
        parsed = CnnOutputTensorInfoExported.from_buffer_copy(bytes(info))
        return [tuple(t.size[:t.num_dimensions]) for t in parsed.info[:parsed.num_tensors]]

    @staticmethod
    def get_kpi_info(metadata: dict) -> tuple[float, float] | None:
        kpi = metadata.get("CnnKpiInfo")
        return None if kpi is None else (kpi[0] / 1000, kpi[1] / 1000)

    def get_injection_cmp_frm(self) -> int:
        return self.sensor.injected_from

    def _IMX500__set_input_tensor(self, fd: int) -> None:
        size = self.sensor.input_size
        padded_w, padded_h = (size + 31) // 32 * 32, (size + 1) // 2 * 2
        data = os.pread(fd, 3 * padded_w * padded_h + 1, 0)
        assert len(data) == 3 * padded_w * padded_h, len(data)
        planes = np.frombuffer(data, np.int8).reshape(3, padded_h, padded_w)[:, :size, :size]
        self.sensor.injected = (np.transpose(planes, (1, 2, 0)).astype(np.int16) + 128).astype(np.uint8)
        self.sensor.injected_from = (self.sensor.counter + 2) & 0xFF


class FakePicamera2:
    """picamera2.Picamera2's API as the AI Camera path uses it."""

    def __init__(self, sensor: FakeSensor, camera_num: int = 0) -> None:
        self.sensor = sensor
        self.calls: list[tuple] = []
        self.size = (640, 480)

    def create_preview_configuration(self, main: dict, controls: dict | None = None, buffer_count: int = 4) -> dict:
        self.calls.append(("create_preview_configuration", main, controls, buffer_count))
        return {"main": dict(main), "controls": controls or {}}

    def start(self, config: dict, show_preview: bool = False) -> None:
        self.calls.append(("start", config, show_preview))
        self.size = tuple(config["main"]["size"])

    def capture_request(self) -> FakeRequest:
        sensor = self.sensor
        scene_index = sensor.captured % len(sensor.scenes)
        scene = sensor.scenes[scene_index]
        sensor.captured += 1
        sensor.counter = (sensor.counter + 1) & 0xFF
        frame = cv2.resize(scene, self.size, interpolation=cv2.INTER_AREA)  # RGB888: B, G, R bytes
        metadata: dict = {}
        if sensor.captured > sensor.loading_frames:
            if sensor.injected is not None and _reached(sensor.counter, sensor.injected_from):
                rgb = sensor.injected
            else:
                size = (sensor.input_size, sensor.input_size)
                rgb = cv2.cvtColor(cv2.resize(frame, size, interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2RGB)
            scores = sensor.network(rgb)
            shape = sensor.output_shape or (scores.size,)
            metadata["CnnOutputTensor"] = scores.reshape(shape).flatten(order="F").tolist()
            metadata["CnnOutputTensorInfo"] = _tensor_info(shape, sensor.counter)
            metadata["CnnKpiInfo"] = [4200, 1300]
            sensor.scored_frames.append(frame)
            sensor.scored_scenes.append(scene_index)
            sensor.scored_inputs.append(rgb)
        return FakeRequest(frame, metadata)

    def stop(self) -> None:
        self.calls.append(("stop",))

    def close(self) -> None:
        self.calls.append(("close",))


def _reached(counter: int, wanted: int | None) -> bool:
    return wanted is not None and ((counter - wanted) & 0xFF) < 0x80


def _tensor_info(shape: tuple[int, ...], frame_count: int) -> bytes:
    info = CnnOutputTensorInfoExported()
    info.network_name = b"edgepipe"
    info.num_tensors = 1
    info.info[0].tensor_data_num = int(np.prod(shape))
    info.info[0].num_dimensions = len(shape)
    for i, dim in enumerate(shape):
        info.info[0].size[i] = dim
    info.frameCount = frame_count
    return bytes(info)
