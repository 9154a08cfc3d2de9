"""The user docs hold what they claim: README's models table and MODEL_CARD's tables are the figures of
bench/results/doc_numbers.json (written by bench/doc_numbers.py), the docs stay short enough to read, every
relative link points at a file that exists, and the code has a licence. Reads files only (no model runs)."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
CARD = ROOT / "MODEL_CARD.md"
NUMBERS = ROOT / "bench" / "results" / "doc_numbers.json"
DOCS = [README, CARD, ROOT / "CHANGELOG.md", *sorted((ROOT / "docs").rglob("*.md"))]
RERUN = "run `python bench/doc_numbers.py` and paste the table it prints (--print readme|val|conditions)"


@pytest.fixture(scope="module")
def numbers() -> dict:
    return json.loads(NUMBERS.read_text())


def split_row(line: str) -> list[str]:
    return [cell.strip() for cell in line.strip().strip("|").split("|")]


def tables(text: str) -> list[dict]:
    """Every markdown table of a document: its header and its rows, cells stripped."""
    found, lines, i = [], text.splitlines(), 0
    while i < len(lines) - 1:
        if lines[i].lstrip().startswith("|") and re.fullmatch(r"\s*\|(\s*:?-+:?\s*\|)+\s*", lines[i + 1]):
            header, rows, i = split_row(lines[i]), [], i + 2
            while i < len(lines) and lines[i].lstrip().startswith("|"):
                rows.append(split_row(lines[i]))
                i += 1
            found.append({"header": header, "rows": rows})
        else:
            i += 1
    return found


def table_with_header(path: Path, header: list[str]) -> dict:
    matches = [t for t in tables(path.read_text()) if t["header"] == header]
    assert len(matches) == 1, f"{path.name}: expected one table with the header {header}; {RERUN}"
    return matches[0]


def section(text: str, title: str) -> str:
    start = text.index(f"\n## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start:] if end < 0 else text[start:end]


def test_readme_models_table_is_doc_numbers(numbers):
    want = numbers["readme_table"]
    got = [t for t in tables(section(README.read_text(), "Models")) if t["header"] == want["header"]]
    assert got, f"README.md's Models section has no table with the header {want['header']}; {RERUN}"
    assert got[0]["rows"] == want["rows"], f"README.md's models table differs from doc_numbers.json; {RERUN}"


@pytest.mark.parametrize("key", ["card_val_table", "card_conditions_table", "card_tracking_table"])
def test_model_card_tables_are_doc_numbers(numbers, key):
    want = numbers[key]
    assert table_with_header(CARD, want["header"])["rows"] == want["rows"], \
        f"MODEL_CARD.md's table ({key}) differs from doc_numbers.json; {RERUN}"


def test_doc_numbers_follow_their_sources(numbers):
    """What doc_numbers.json says equals the files it was read from (cheap ones: eval metrics, file sizes)."""
    for name, m in numbers["models"].items():
        metrics = json.loads((ROOT / m["val"]["source"]).read_text())
        assert m["val"]["ap"] == metrics["ap"]["oks"], f"{name}: val AP is stale; {RERUN}"
        assert m["val"]["persons"] == metrics["num_instances"] == 822
        size = round(sum((ROOT / f).stat().st_size for f in m["files"]) / 1e6, 1)
        assert m["file_mb"] == size, f"{name}: {m['files']} are {size} MB, doc_numbers.json says {m['file_mb']}; {RERUN}"
    for name, t in numbers["tracking"].items():
        report = json.loads((ROOT / t["source"]).read_text())
        assert t["held_out"]["idf1"] == report["held_out"]["OVERALL"]["idf1"], f"{name}: tracking is stale; {RERUN}"
    trust = json.loads((ROOT / numbers["conditions"]["source"]).read_text())
    assert numbers["conditions"]["figures"] == trust["conditions"], f"conditions are stale; {RERUN}"


def test_docs_are_short():
    assert len(README.read_bytes()) <= 12_000, "README.md is over 12,000 bytes: move detail to docs/"
    assert len(CARD.read_bytes()) <= 30_000, "MODEL_CARD.md is over 30,000 bytes: history goes to CHANGELOG.md"


def test_licence():
    text = (ROOT / "LICENSE").read_text()
    assert "Apache License" in text and "Version 2.0" in text
    assert re.search(r'^license\s*=\s*"Apache-2.0"', (ROOT / "pyproject.toml").read_text(), re.M), \
        "pyproject.toml's license field should match LICENSE (Apache-2.0)"


LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_exist(doc):
    text = re.sub(r"```.*?```", "", doc.read_text(), flags=re.S)   # code blocks hold commands, not links
    missing = []
    for target in LINK.findall(text):
        if re.match(r"[a-z][a-z0-9+.-]*:", target, re.I) or target.startswith("#"):
            continue   # http(s)://, mailto:, anchors within the page
        path = (doc.parent / target.split("#")[0]).resolve()
        if not path.exists():
            missing.append(target)
    assert not missing, f"{doc.relative_to(ROOT)}: links to missing files: {missing}"


def test_model_card_says_what_the_shipped_video_calibration_is():
    """MODEL_CARD says what the shipped model file records (its video calibration's fit_info and maps): the count of
    tuning scenes the maps were fitted on, or, where the judgement shipped none, that there is no video map and on
    how many tuning scenes that was judged; a file with none fitted, that none ships and it was not judged."""
    pytest.importorskip("torch")
    import re

    from posecal.models.checkpoint import load_model

    meta = load_model(ROOT / "posecal" / "weights" / "posecal_accurate.pt")[2]
    video = meta["calibration"].get("video")
    card = (ROOT / "MODEL_CARD.md").read_text().replace("\n  ", " ")
    if video is None:   # none in the file: the card says so, and that it was not judged, or on how many scenes
        assert "No video map" in card and ("not re-judged since" in card or
                                           re.search(r"no map on \d+ tuning scenes", card)), "MODEL_CARD: video map"
        return
    scenes = re.search(r"scenes \[([0-9, ]+)\]", video["fit_info"]["source"]).group(1).split(",")
    if video["by_source"]:
        assert f"fitted on {len(scenes)} synthetic scenes" in card, video["fit_info"]["source"]
    else:
        assert "No video map" in card and f"no map on {len(scenes)} tuning scenes" in card
