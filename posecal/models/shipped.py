"""The models shipped with posecal, by name, and where their files are: importable without PyTorch.

SHIPPED_GRAPHS travel as ONNX graphs (posecal_NAME.onnx with the flip test built in, posecal_NAME.noflip.onnx
without, fp16 weights stored once in posecal_NAME.onnx.data), run by onnxruntime with no PyTorch. The PyTorch files
(posecal_NAME.pt: training, export, `--backend torch`) are in the source tree, not the wheel; `published` has no
graphs. tools/build_shipped_graphs.py makes the graphs, each recording the digest of its .pt (a test checks it).

On a CPU a shipped name runs its int8 graphs (posecal_NAME.int8.onnx) where precision `auto` picks them
(devices.auto_precision: int8 multiplied exactly, with VNNI) or `--precision int8` asks, else its float graphs;
int8 holds accuracy within noise and is faster (CHANGELOG) and answers alike on every CPU kind
(devices.int8_saturates). "NAME-float" names the float graphs, which a GPU always runs.
"""
from __future__ import annotations

from pathlib import Path

from posecal.devices import choose_precision

WEIGHTS_DIR = Path(__file__).parent.parent / "weights"
# The models shipped with posecal, chosen by name wherever a model file is asked for
# (`--model accurate|published|fast|FILE`, `Predictor("accurate")`); `posecal models` lists them with what each
# is for (SHIPPED_MODEL_USES) and MODEL_CARD.md measures them. A name keeps its role; the weights it names are told
# apart by each graph's model_version (name + the .pt's digest). `fast` named posecal's EfficientNet-Lite0 until
# MoveNet Lightning + posecal's trust model won on val (CHANGELOG); that model is `lite0` now (source tree only).
SHIPPED_GRAPHS = ("accurate", "fast")   # the models the wheel carries, as graphs
FLOAT_SUFFIX = "-float"                 # "accurate-float": accurate's float graphs, where "accurate" runs int8
SHIPPED_MODELS = {"accurate": WEIGHTS_DIR / "posecal_accurate.pt", "published": WEIGHTS_DIR / "posecal_published.pt",
                  "fast": WEIGHTS_DIR / "posecal_fast.pt",
                  "lite0": WEIGHTS_DIR / "posecal_lite0.pt",
                  **{name + FLOAT_SUFFIX: WEIGHTS_DIR / f"posecal_{name}.pt" for name in SHIPPED_GRAPHS}}
SHIPPED_MODEL_USES = {
    "accurate": "MoveNet Thunder 256x256 fine-tuned by posecal on COCO + posecal's trust model; the default of "
                "predict, track, eval, audit and the Python API",
    "published": "MoveNet Thunder 256x256 as Google published it + posecal's trust model; for comparison with "
                 "the network as Google published it",
    "fast": "MoveNet Lightning 192x192 as Google published it + posecal's trust model at 128 px; faster, less "
            "accurate",
    "lite0": "EfficientNet-Lite0 192x144 trained by posecal with its own quality and visibility heads (fast until "
             "Lightning replaced it); the trust model's starting point; PyTorch only",
    **{name + FLOAT_SUFFIX: f"{name}'s float graphs on every CPU, also where {name} runs int8 (a CPU with VNNI): "
                            f"the graphs its calibration was fitted on, slower there" for name in SHIPPED_GRAPHS},
}
DEFAULT_MODEL_NAME = "accurate"
DEFAULT_MODEL = SHIPPED_MODELS[DEFAULT_MODEL_NAME]


def model_file(spec) -> Path:
    """A model argument -> its file: None = the default shipped model's .pt, a shipped model's name, else a path."""
    if spec is None:
        return DEFAULT_MODEL
    return SHIPPED_MODELS.get(str(spec), Path(spec))


def shipped_name(spec) -> str | None:
    """The shipped model a model argument names (None: the default), else None (a path)."""
    if spec is None:
        return DEFAULT_MODEL_NAME
    return str(spec) if str(spec) in SHIPPED_MODELS else None


def graph_model(name: str) -> str:
    """The model whose graphs a shipped name runs: "accurate-float" -> "accurate"; other names are their own."""
    return name[:-len(FLOAT_SUFFIX)] if name.endswith(FLOAT_SUFFIX) else name


def shipped_graph(name: str, flip: bool) -> Path:
    """A shipped model's ONNX graph, with or without the flip test built in (the two share one weights file)."""
    return WEIGHTS_DIR / f"posecal_{name}{'' if flip else '.noflip'}.onnx"


def packaged_graph(spec, flip: bool, device: str = "cpu", precision: str = "auto") -> Path | None:
    """The packaged graph a model argument runs on the onnx backend: a shipped name (None: the default) whose
    graphs this installation has, int8 on a CPU where `precision` (posecal.devices.choose_precision: auto picks by
    the CPU) says so, float for "NAME-float" and on "cuda"; None for anything else (a path, or a model without
    graphs)."""
    name = shipped_name(spec)
    model = None if name is None else graph_model(name)
    if model not in SHIPPED_GRAPHS or not shipped_graph(model, True).is_file():
        return None
    if name == model and choose_precision(precision, device)[0] == "int8" and int8_graph(model, flip).is_file():
        return int8_graph(model, flip)
    return shipped_graph(model, flip)


def staged_graphs(flip_graph: Path) -> tuple[Path, Path] | None:
    """The look and refine graphs beside a shipped flip graph (posecal_NAME.onnx -> posecal_NAME.look.onnx,
    posecal_NAME.refine.onnx: a staged crop's two stages, which together give the flip graph's outputs), None where
    they are not there (the int8 graphs: posed in one graph)."""
    stem = Path(flip_graph).name[:-len(".onnx")]
    pair = tuple(Path(flip_graph).with_name(f"{stem}.{stage}.onnx") for stage in ("look", "refine"))
    return pair if all(p.is_file() for p in pair) else None


def trust_graph(name: str) -> Path:
    """A shipped model's trust model alone as a graph that takes another estimator's keypoints (posecal
    calibrate --images without PyTorch); it reads the model's fp16 weights file, where its weights already are."""
    return WEIGHTS_DIR / f"posecal_{name}.trust.onnx"


def int8_graph(name: str, flip: bool) -> Path:
    """A shipped model's int8 graph (tools/quantize_shipped_graphs.py), with or without the flip
    test built in; both read int8_graph_weights(name). It opens as any exported posecal .onnx file does."""
    return WEIGHTS_DIR / f"posecal_{name}.int8{'' if flip else '.noflip'}.onnx"


def int8_graph_weights(name: str) -> Path:
    return WEIGHTS_DIR / f"posecal_{name}.int8.onnx.data"


def graph_weights(name: str) -> Path:
    """The fp16 weights file both of a shipped model's graphs read."""
    return WEIGHTS_DIR / f"posecal_{name}.onnx.data"


def is_installed(name: str) -> bool:
    """This installation carries the model: its graphs (every install) or its PyTorch file (a source tree)."""
    return shipped_graph(graph_model(name), True).is_file() or SHIPPED_MODELS[name].is_file()


def installed_models() -> list[str]:
    return [name for name in SHIPPED_MODELS if is_installed(name)]


def shipped_model_table() -> list[dict]:
    """The shipped models as `posecal models` lists them: name, what it is for, its graph (`file`), the bytes of
    its graphs and their weights file as a CPU runs them (None: not in this installation), and its PyTorch file
    where this installation has one (a source tree)."""
    rows = []
    for name, torch_file in SHIPPED_MODELS.items():
        flip_graph = packaged_graph(name, True) or shipped_graph(name, True)
        weights = int8_graph_weights(name) if flip_graph == int8_graph(name, True) else graph_weights(graph_model(name))
        files = [flip_graph, packaged_graph(name, False) or shipped_graph(name, False), weights]
        size = sum(f.stat().st_size for f in files) if all(f.is_file() for f in files) else None
        rows.append({"name": name, "default": name == DEFAULT_MODEL_NAME, "file": str(files[0]), "bytes": size,
                     "precision": ("int8" if flip_graph == int8_graph(name, True) else "float") if size else None,
                     "torch_file": str(torch_file) if torch_file.is_file() else None,
                     "use": SHIPPED_MODEL_USES[name]})
    return rows


def missing_model_message(spec, path: Path) -> str:
    """One line for a --model that is neither a shipped name nor a file: a bare word is most likely a mistyped
    name, so the names are listed."""
    shipped = ", ".join(installed_models())
    if len(Path(str(spec)).parts) == 1 and not Path(str(spec)).suffix:
        return f"model {str(spec)!r}: no shipped model of that name and no such file (shipped: {shipped})"
    return f"{path}: model file not found"
