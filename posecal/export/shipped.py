"""A shipped model's ONNX graphs, made from its PyTorch model file: what the wheel carries instead of the file.

Two graphs (flip test built in, and not) read one weights file: every float weight that float16 holds exactly
(all but a few constants: the shipped model files hold fp16 weights, and the graph keeps its BatchNormalization
nodes unfolded) is stored once as float16 behind a Cast to float32, which onnxruntime folds when it opens the
graph, so inference runs in float32 on the model file's exact values. Weights that both graphs hold (all of
them) are written once, found by their bytes. Each graph records the model's version and the SHA-256 of the file
it was made from.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from posecal.calibration.reported import META_KEY as REPORTED_META_KEY
from posecal.errors import require
from posecal.export.onnx import onnx_bytes, trust_onnx_proto
from posecal.export.session import SOURCE_KEY, STAGES, VERSION_KEY
from posecal.io import write_bytes_atomic
from posecal.models.checkpoint import load_model
from posecal.models.config import TRUST_INPUT, stages_crops
from posecal.models.shipped import SHIPPED_MODELS, graph_weights, shipped_graph, trust_graph

FP16_MIN_ELEMENTS = 64   # smaller float tensors (shapes, scales, constants) stay float32 inside the graph
ALIGN = 64               # byte alignment of each weight in the weights file


def build_shipped_graphs(name: str, weights_dir: Path | None = None) -> dict:
    """Write `name`'s two graphs (and, for a model that stages its crops, its look and refine graphs) and their
    weights file (in weights_dir, default posecal/weights); returns the
    files' sizes in bytes and the model version written."""
    onnx = require("onnx")
    path = SHIPPED_MODELS[name]
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    model, cfg, meta = load_model(path)
    version = meta.get("model_version") or f"{name}-{digest[:12]}"
    maps = {"calibration": meta.get("calibration"), "reported": meta.get(REPORTED_META_KEY)}   # carried in each graph
    graphs = {flip: onnx.load_from_string(onnx_bytes(model, cfg, flip, keep_batchnorm=True, **maps))
              for flip in (True, False)}
    # the flip test as a look and its refinement, same weights
    stages = STAGES if stages_crops(cfg) else ()
    graphs |= {stage: onnx.load_from_string(onnx_bytes(model, cfg, True, keep_batchnorm=True, stage=stage, **maps))
               for stage in stages}
    data_path = graph_weights(name) if weights_dir is None else Path(weights_dir) / graph_weights(name).name
    blob, offsets = bytearray(), {}
    for proto in graphs.values():
        _store_fp16(proto, data_path.name, blob, offsets)
        for key, value in ((VERSION_KEY, version), (SOURCE_KEY, digest)):
            entry = proto.metadata_props.add()
            entry.key, entry.value = key, value
    write_bytes_atomic(data_path, bytes(blob))
    sizes = {data_path.name: len(blob)}
    for kind, proto in graphs.items():
        path = shipped_graph(name, kind) if isinstance(kind, bool) else \
            shipped_graph(name, True).with_name(f"posecal_{name}.{kind}.onnx")
        out = path if weights_dir is None else Path(weights_dir) / path.name
        data = proto.SerializeToString()
        write_bytes_atomic(out, data)
        sizes[out.name] = len(data)
    return {"version": version, "source_sha256": digest, "bytes": sizes}


def build_trust_graph(name: str, weights_dir: Path | None = None) -> dict:
    """Write `name`'s trust model alone as a graph (models.shipped.trust_graph) beside its two graphs, reading
    their weights file: the trust model's weights are inside the model's graphs already, so the file only grows
    by what they do not hold (nothing, for a model whose graphs carry its trust model). Crops at TRUST_INPUT,
    posecal's square person crop that `calibrate --images` cuts from another estimator's box."""
    onnx = require("onnx")
    path = SHIPPED_MODELS[name]
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    model, _, meta = load_model(path)
    if getattr(model, "trust", None) is None:
        raise ValueError(f"{path.name} has no trust model")
    folder = graph_weights(name).parent if weights_dir is None else Path(weights_dir)
    data_path = folder / graph_weights(name).name
    blob = bytearray(data_path.read_bytes())
    offsets = _stored_offsets(onnx.load(str(folder / shipped_graph(name, True).name), load_external_data=False),
                              blob)
    size_before = len(blob)
    proto = trust_onnx_proto(model.trust, TRUST_INPUT)
    _store_fp16(proto, data_path.name, blob, offsets)
    version = meta.get("model_version") or f"{name}-{digest[:12]}"
    for key, value in ((VERSION_KEY, version), (SOURCE_KEY, digest)):
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    if len(blob) != size_before:   # appended only: the model's graphs read their weights where they were
        write_bytes_atomic(data_path, bytes(blob))
    out = folder / trust_graph(name).name
    data = proto.SerializeToString()
    write_bytes_atomic(out, data)
    return {"version": version, "source_sha256": digest, "bytes": {out.name: len(data)},
            "weights_added": len(blob) - size_before}


def _stored_offsets(proto, blob: bytes) -> dict:
    """{sha256 of a stored tensor's bytes: its offset} for the external tensors of a graph reading `blob`."""
    offsets = {}
    for init in proto.graph.initializer:
        ext = {e.key: e.value for e in init.external_data}
        if "offset" in ext:
            start = int(ext["offset"])
            offsets[hashlib.sha256(blob[start:start + int(ext["length"])]).hexdigest()] = start
    return offsets


def _store_fp16(proto, location: str, blob: bytearray, offsets: dict) -> None:
    """Float32 initializers of `proto` that float16 holds exactly -> float16 tensors in `blob` (external data at
    `location`), each behind a Cast node that gives the graph its float32 tensor under the original name; the
    others stay in the graph as they are."""
    from onnx import TensorProto, helper, numpy_helper

    kept, casts = [], []
    for init in proto.graph.initializer:
        array = numpy_helper.to_array(init)
        half_array = array.astype(np.float16) if array.dtype == np.float32 else None
        if half_array is None or array.size < FP16_MIN_ELEMENTS or not np.array_equal(half_array, array):
            kept.append(init)
            continue
        half = numpy_helper.from_array(half_array, init.name + "__fp16")
        raw = half.raw_data
        key = hashlib.sha256(raw).hexdigest()
        if key not in offsets:
            blob.extend(b"\0" * (-len(blob) % ALIGN))
            offsets[key] = len(blob)
            blob.extend(raw)
        half.ClearField("raw_data")
        half.data_location = TensorProto.EXTERNAL
        for k, v in (("location", location), ("offset", str(offsets[key])), ("length", str(len(raw)))):
            entry = half.external_data.add()
            entry.key, entry.value = k, v
        kept.append(half)
        casts.append(helper.make_node("Cast", [half.name], [init.name], to=TensorProto.FLOAT,
                                      name=init.name + "__cast"))
    with_casts(proto, kept, casts)


def with_casts(proto, initializers: list, casts: list) -> None:
    """`proto`'s initializers replaced by `initializers`, and the `casts` (nodes that give the graph its float32
    tensors from stored float16 ones) put before every other node."""
    del proto.graph.initializer[:]
    proto.graph.initializer.extend(initializers)
    nodes = casts + list(proto.graph.node)
    del proto.graph.node[:]
    proto.graph.node.extend(nodes)
