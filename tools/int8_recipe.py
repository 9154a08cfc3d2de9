"""The shipped graphs' int8 recipe (tools/quantize_shipped_graphs.py makes the graphs with it): which nodes are
quantised (`int8_nodes`, INT8_WEIGHT_PREFIXES per shipped model) and the trust model's deconvolutions rewritten as
sub-pixel convolutions onnxruntime runs in int8 (`subpixel_deconvolutions`). posecal/export/quantize.py quantises
(`posecal export --int8` too); nothing the product runs picks nodes or rewrites a graph."""
from __future__ import annotations

import numpy as np

from posecal.export.quantize import FOLLOWERS, NETWORK_OPS


# The shipped graphs in int8 (made by tools/quantize_shipped_graphs.py): per model, the convolutions
# whose weights' names start with these are quantised, with the activation ops that follow them (ReLU6 clips,
# ReLUs, residual adds, upsampling); every decode op stays float. `accurate`: its trust network and MoveNet's
# backbone; MoveNet's FPN and its four heads stay float (quantised, they cost 3 AP and keypoint ECE 0.0095 ->
# 0.05 on val, no flip: its keypoint regressions and offsets need more than 8 bits). `fast` (MoveNet Lightning +
# the trust model): the trust network only; Lightning's backbone in int8 moved its keypoints (val AP 38.3 -> 36.5,
# 211 of 822 persons' OKS by more than 0.05), the trust network alone changes no keypoint (AP 38.3 both).
INT8_WEIGHT_PREFIXES = {"accurate": ("model.trust.", "model.backbone.backbone."), "fast": ("model.trust.",)}


def int8_nodes(proto, prefixes: tuple[str, ...]) -> list[str]:
    """The nodes of an exported graph to quantise: Conv/ConvTranspose nodes whose weight's name starts with one
    of `prefixes`, and activation ops (clips, ReLUs, adds, concats, resizes) all of whose computed inputs come
    from network ops, at least one of them quantised. Decode ops (gathers, argmaxes, arithmetic on coordinates)
    never are."""
    made_by = {out: node for node in proto.graph.node for out in node.output}
    chosen = set()
    for node in proto.graph.node:   # a graph's nodes are in topological order
        if node.op_type in ("Conv", "ConvTranspose"):
            if any(name.startswith(prefixes) for name in node.input[1:2]):
                chosen.add(node.name)
        elif node.op_type in FOLLOWERS:
            producers = [made_by[i] for i in node.input if i in made_by]
            if (producers and all(p.op_type in NETWORK_OPS for p in producers)
                    and any(p.name in chosen for p in producers)):
                chosen.add(node.name)
    return [node.name for node in proto.graph.node if node.name in chosen]


def subpixel_deconvolutions(proto) -> int:
    """Rewrite each ConvTranspose (kernel 4, stride 2, padding 1, one group: the trust model's upsampling) as the
    same function in ops onnxruntime runs in int8: a 3x3 convolution with 4x the output channels (one per output
    phase) and a DepthToSpace(2, CRD). onnxruntime has no int8 ConvTranspose on the CPU, so unrewritten these
    stay float behind a dequantisation. Returns the number rewritten; the graph's outputs are unchanged (float
    rounding apart)."""
    from onnx import helper, numpy_helper

    inits = {init.name: init for init in proto.graph.initializer}
    nodes, done = [], 0
    for node in proto.graph.node:
        a = {attr.name: helper.get_attribute_value(attr) for attr in node.attribute}
        if not (node.op_type == "ConvTranspose" and node.input[1] in inits and list(a.get("kernel_shape", ())) == [4, 4]
                and list(a.get("strides", ())) == [2, 2] and list(a.get("pads", ())) == [1, 1, 1, 1]
                and a.get("group", 1) == 1 and not any(a.get("output_padding", ())) and "output_shape" not in a
                and list(a.get("dilations", (1, 1))) == [1, 1]
                and a.get("auto_pad", b"NOTSET") in (b"NOTSET", "NOTSET")):
            nodes.append(node)
            continue
        kernel = numpy_helper.from_array(phase_kernels(numpy_helper.to_array(inits[node.input[1]])),
                                         node.input[1] + "__subpixel")
        proto.graph.initializer.append(kernel)
        inputs = [node.input[0], kernel.name]
        if len(node.input) > 2 and node.input[2]:
            bias = numpy_helper.from_array(np.repeat(numpy_helper.to_array(inits[node.input[2]]), 4),
                                           node.input[2] + "__subpixel")
            proto.graph.initializer.append(bias)
            inputs.append(bias.name)
        phases = node.output[0] + "__phases"
        nodes.append(helper.make_node("Conv", inputs, [phases], name=node.name + "__subpixel", kernel_shape=[3, 3],
                                      pads=[1, 1, 1, 1]))
        nodes.append(helper.make_node("DepthToSpace", [phases], list(node.output), name=node.name + "__d2s",
                                      blocksize=2, mode="CRD"))
        done += 1
    del proto.graph.node[:]
    proto.graph.node.extend(nodes)
    used = {name for node in proto.graph.node for name in node.input}
    kept = [init for init in proto.graph.initializer if init.name in used]
    del proto.graph.initializer[:]
    proto.graph.initializer.extend(kept)
    return done


def phase_kernels(weight: np.ndarray) -> np.ndarray:
    """A ConvTranspose weight (Cin, Cout, 4, 4; stride 2, padding 1) -> the 3x3 convolution weight (4 Cout, Cin,
    3, 3) whose output channel 4o + 2a + b is output phase (row a, column b) of channel o: output row 2i + a
    reads input row i + u - 1 through kernel row a + 1 - 2(u - 1) where that lies in 0..3."""
    cin, cout = weight.shape[:2]
    kernel = np.zeros((cout, 2, 2, cin, 3, 3), weight.dtype)
    for a in range(2):
        for b in range(2):
            for u in range(3):
                for v in range(3):
                    ky, kx = a + 1 - 2 * (u - 1), b + 1 - 2 * (v - 1)
                    if 0 <= ky < 4 and 0 <= kx < 4:
                        kernel[:, a, b, :, u, v] = weight[:, :, ky, kx].T
    return kernel.reshape(4 * cout, cin, 3, 3)
