"""int8 static quantisation of an exported posecal ONNX model (onnxruntime.quantization), calibrated on real
person crops: what makes the pose network several times cheaper on a CPU without AVX-512 VNNI too.

Static (not dynamic) because the network is convolutional: dynamic quantisation only touches MatMul/Gemm.
Activation ranges come from real crops (the caller's), never random inputs: random pixels give ranges
that waste most of the 8 bits. QDQ format, per-channel weights, as onnxruntime recommends for CNNs on CPU.
The posecal metadata (model config, flip setting) is copied over, so the result is a posecal .onnx model.
"""
from __future__ import annotations

import json
import logging
import os
import tempfile

import numpy as np

from posecal.errors import PosecalInputError, require
from posecal.export.session import INT8_KEY


def quantize_int8(model_bytes: bytes, calibration, nodes: list[str] | None = None) -> bytes:
    """Exported posecal ONNX bytes and calibration crops (N, 3, H, W) float32, normalised as the model's
    input (or, for a graph of more inputs, such as a staged crop's refinement, a list of its inputs by name, one
    crop each) -> int8 QDQ ONNX bytes with the same inputs, outputs and metadata. nodes: quantise these nodes only
    (tools/int8_recipe.py's int8_nodes), the rest stays float; None: every op onnxruntime quantises by default."""
    onnx = require("onnx")
    quant = require("onnxruntime.quantization")
    if nodes is not None and not len(nodes):   # nothing to quantise (onnxruntime reads an empty list as "all")
        return model_bytes
    if isinstance(calibration, np.ndarray):
        calibration = np.asarray(calibration, np.float32)
        feeds = [{"images": calibration[i:i + 1]} for i in range(len(calibration))]
    else:
        feeds = [{name: np.asarray(value, np.float32) for name, value in feed.items()} for feed in calibration]

    class Crops(quant.CalibrationDataReader):
        def __init__(self):
            self.items = iter(feeds)

        def get_next(self):
            return next(self.items, None)

    src = onnx.load_from_string(model_bytes)
    with tempfile.TemporaryDirectory() as tmp:
        fp32, int8 = os.path.join(tmp, "fp32.onnx"), os.path.join(tmp, "int8.onnx")
        onnx.save(src, fp32)
        # onnxruntime advises its pre-processing (shape inference, graph optimisation) on the root logger: noise to
        # a user, as posecal quantises without it (MODEL_CARD.md's int8 figures are those of this path).
        logging.disable(logging.WARNING)
        try:
            chosen = ({} if nodes is None else
                      {"nodes_to_quantize": list(nodes), "op_types_to_quantize": list(NETWORK_OPS)})
            quant.quantize_static(fp32, int8, Crops(), quant_format=quant.QuantFormat.QDQ, per_channel=True,
                                  activation_type=quant.QuantType.QUInt8, weight_type=quant.QuantType.QInt8,
                                  **chosen)
        finally:
            logging.disable(logging.NOTSET)
        out = onnx.load(int8)
    del out.metadata_props[:]
    out.metadata_props.extend(src.metadata_props)
    if not any(entry.key == INT8_KEY for entry in out.metadata_props):   # what it runs with, said in the graph
        entry = out.metadata_props.add()
        entry.key, entry.value = INT8_KEY, json.dumps({"format": "QDQ", "per_channel": True,
                                                       "activations": "uint8 MinMax", "weights": "int8"})
    return out.SerializeToString()


def calibration_crops(annotations, images, input_wh, n: int) -> np.ndarray:
    """n real person crops (N, 3, H, W), spread evenly over the persons of a COCO keypoint file (their GT
    boxes, no augmentation), as the model sees them at test time. Take them from training data: ranges fitted
    on the set you then evaluate on would flatter the int8 model."""
    from posecal.data.coco import load_coco_persons
    from posecal.data.topdown import TopDownDataset

    records = load_coco_persons(annotations, images)
    if not records:
        raise PosecalInputError(f"{annotations}: no person with labelled keypoints to calibrate the int8 ranges on")
    picked = [records[i] for i in np.unique(np.linspace(0, len(records) - 1, min(n, len(records))).round().astype(int))]
    dataset = TopDownDataset(picked, input_wh)
    return np.stack([dataset[i]["image"].numpy() for i in range(len(dataset))]).astype(np.float32)


# the ops quantised where the caller names nodes (quantize_int8's nodes): convolutions and the activation ops that
# follow them (tools/int8_recipe.py picks the shipped graphs' nodes)
FOLLOWERS = ("Clip", "Relu", "Add", "Concat", "Resize")
NETWORK_OPS = ("Conv", "ConvTranspose", *FOLLOWERS)
