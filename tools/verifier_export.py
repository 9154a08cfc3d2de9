"""The person verifier's network (posecal/models/verifier.py) as the one ONNX graph posecal ships
(posecal/weights/person_verifier.onnx, read by posecal/detect/verifier.py).

Its weights are rounded to float16 before the export and stored as float16 behind a Cast to float32, so the file
is half the size and the graph computes exactly what the rounded network computes (the round trip is tested). What
it was trained on and how well it did travel in the graph's metadata (`posecal_verifier`).
"""
from __future__ import annotations

import io
import json
import logging
import warnings
from contextlib import redirect_stdout
from pathlib import Path

import numpy as np
import torch

from posecal.detect.verifier import INPUT_HW, MASK_HW, METADATA_KEY
from posecal.errors import require
from posecal.export.shipped import with_casts
from posecal.io import write_bytes_atomic

FP16_MIN_ELEMENTS = 64   # smaller float tensors (shapes, scales) stay float32


def round_to_fp16(net: torch.nn.Module) -> torch.nn.Module:
    """Every float parameter and buffer of `net` rounded to float16 values (kept as float32 tensors)."""
    with torch.no_grad():
        for t in list(net.parameters()) + list(net.buffers()):
            if t.dtype == torch.float32 and t.numel() >= FP16_MIN_ELEMENTS:
                t.copy_(t.half().float())
    return net


def verifier_bytes(net: torch.nn.Module, info: dict) -> bytes:
    """The ONNX graph of a PersonVerifierNet (inputs `crops`, `masks`; output `p_person`), weights as float16."""
    onnx = require("onnx")
    net = round_to_fp16(net.eval())
    buf = io.BytesIO()
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)
    with warnings.catch_warnings(), redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        torch.onnx.export(net, (torch.zeros(2, 3, *INPUT_HW), torch.ones(2, 1, *MASK_HW)), buf,
                          input_names=["crops", "masks"], output_names=["p_person"],
                          dynamic_axes={"crops": {0: "n"}, "masks": {0: "n"}, "p_person": {0: "n"}},
                          opset_version=17, dynamo=False)
    proto = onnx.load_from_string(buf.getvalue())
    _weights_as_fp16(proto)
    entry = proto.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, json.dumps(info)
    onnx.checker.check_model(proto)
    return proto.SerializeToString()


def export_verifier(net: torch.nn.Module, out: Path, info: dict) -> int:
    """Write the verifier's graph to `out` atomically; returns its size in bytes."""
    data = verifier_bytes(net, info)
    write_bytes_atomic(Path(out), data)
    return len(data)


def _weights_as_fp16(proto) -> None:
    """Float32 initializers (of at least FP16_MIN_ELEMENTS values, already fp16-exact) stored as float16, each
    behind a Cast node giving the graph its float32 tensor under the original name."""
    from onnx import TensorProto, helper, numpy_helper

    kept, casts = [], []
    for init in proto.graph.initializer:
        array = numpy_helper.to_array(init)
        if array.dtype != np.float32 or array.size < FP16_MIN_ELEMENTS:
            kept.append(init)
            continue
        kept.append(numpy_helper.from_array(array.astype(np.float16), init.name + "__fp16"))
        casts.append(helper.make_node("Cast", [init.name + "__fp16"], [init.name], to=TensorProto.FLOAT,
                                      name=init.name + "__cast"))
    with_casts(proto, kept, casts)


def recalibrated_verifier_bytes(data: bytes, a: float, b: float, record: dict) -> bytes:
    """A verifier graph whose p(person) is remapped as sigmoid(a * logit(p) + b): its own calibration
    (p = sigmoid(scale * logit + shift), the two scalars before its Sigmoid) composed with the map, so that the
    graph gives the remapped p directly; `record` is added to its metadata as "reported_calibration" (what the
    map was fitted on and how well it did). Why: the map is fitted on the people the product reports (the event:
    the reported box frames a person), not on the boxes the verifier was trained on (bench/person_probability.py)."""
    onnx = require("onnx")
    from onnx import numpy_helper

    proto = onnx.load_from_string(data)
    nodes = {o: n for n in proto.graph.node for o in n.output}
    inits = {i.name: i for i in proto.graph.initializer}
    sigmoid = nodes.get("p_person")
    add = nodes.get(sigmoid.input[0]) if sigmoid is not None and sigmoid.op_type == "Sigmoid" else None
    mul = nodes.get(next((i for i in add.input if i not in inits), "")) if add is not None else None
    if add is None or add.op_type != "Add" or mul is None or mul.op_type != "Mul":
        raise ValueError("not a posecal verifier graph (no calibration Mul -> Add -> Sigmoid before p_person)")
    shift, scale = (next(inits[i] for i in n.input if i in inits) for n in (add, mul))
    for init, value in ((scale, a * numpy_helper.to_array(scale)),
                        (shift, a * numpy_helper.to_array(shift) + b)):
        init.CopyFrom(numpy_helper.from_array(np.asarray(value, np.float32), init.name))
    meta = {p.key: p for p in proto.metadata_props}
    info = json.loads(meta[METADATA_KEY].value) if METADATA_KEY in meta else {}
    info["reported_calibration"] = record
    if METADATA_KEY in meta:
        meta[METADATA_KEY].value = json.dumps(info)
    else:
        entry = proto.metadata_props.add()
        entry.key, entry.value = METADATA_KEY, json.dumps(info)
    onnx.checker.check_model(proto)
    return proto.SerializeToString()
