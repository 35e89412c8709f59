"""PDF extraction: Feilun's PDF parser vs plain pypdf, speed and quality, on the same files.

    .venv/bin/python benchmarks/pdf.py [--seconds 5]     # table on stdout, JSON in results/

Speed: pages/s on every PDF under ../shared/data/documents, each extractor repeated for about
`--seconds` per file (in alternating one-second rounds, so drift of a shared machine hits both).
Plain pypdf is `PdfReader(f).pages[i].extract_text()` for every page. Quality: the Chinese probes
of zh_extraction_probes.jsonl recovered (whitespace removed), and whether a generated two-column
page, written row by row as some producers do, comes out left column first.
"""

from __future__ import annotations

import argparse
import io
import json
import time
from pathlib import Path

from pypdf import PdfReader, PdfWriter
from pypdf.generic import DecodedStreamObject, DictionaryObject, NameObject

from feilun.data.parsers.pdf import PARSER
from feilun.data.parsing import ParseOptions

HERE = Path(__file__).resolve().parent
DOCUMENTS = HERE.parent / ".." / "shared" / "data" / "documents"
ROUND_S = 1.0


def extract_ours(data: bytes) -> str:
    return PARSER.parse(data, "bench.pdf", ParseOptions()).text


def extract_plain(data: bytes) -> str:
    reader = PdfReader(io.BytesIO(data))
    return "\n".join(page.extract_text() for page in reader.pages)


EXTRACTORS = {"feilun pdf parser": extract_ours, "plain pypdf": extract_plain}


def pages_per_s(data: bytes, pages: int, seconds: float) -> dict[str, float]:
    """Pages/s of each extractor, timed in alternating rounds of about ROUND_S each."""
    spent = dict.fromkeys(EXTRACTORS, 0.0)
    runs = dict.fromkeys(EXTRACTORS, 0)
    for extract in EXTRACTORS.values():
        extract(data)  # warm-up: imports, caches
    while min(spent.values()) < seconds:
        for label, extract in EXTRACTORS.items():
            started = time.perf_counter()
            while time.perf_counter() - started < ROUND_S:
                extract(data)
                runs[label] += 1
            spent[label] += time.perf_counter() - started
    return {label: runs[label] * pages / spent[label] for label in EXTRACTORS}


def squeeze(text: str) -> str:
    return "".join(text.split())


def probe_scores() -> dict[str, tuple[int, int]]:
    """(recovered, total) probes per extractor, over the PDFs the probe file names."""
    lines = (DOCUMENTS / "zh_extraction_probes.jsonl").read_text(encoding="utf-8").splitlines()
    probes = [p for p in map(json.loads, lines) if p["file"].endswith(".pdf")]
    scores = {}
    for label, extract in EXTRACTORS.items():
        texts: dict[str, str] = {}
        found = 0
        for probe in probes:
            if probe["file"] not in texts:
                texts[probe["file"]] = squeeze(extract((DOCUMENTS / probe["file"]).read_bytes()))
            found += squeeze(probe["expected_substring"]) in texts[probe["file"]]
        scores[label] = (found, len(probes))
    return scores


def two_column_pdf() -> tuple[bytes, str]:
    """A page of two 12-line columns whose stream goes row by row; the reading-order text."""
    left = [f"Left column sentence {i} of the first story" for i in range(12)]
    right = [f"Right column sentence {i} of the second one" for i in range(12)]
    operators = []
    for i, (a, b) in enumerate(zip(left, right, strict=True)):
        y = 700 - 14 * i
        operators += [f"BT /F1 10 Tf 72 {y} Td ({a}) Tj ET", f"BT /F1 10 Tf 320 {y} Td ({b}) Tj ET"]
    writer = PdfWriter()
    page = writer.add_blank_page(612, 792)
    font = DictionaryObject(
        {
            NameObject("/Type"): NameObject("/Font"),
            NameObject("/Subtype"): NameObject("/Type1"),
            NameObject("/BaseFont"): NameObject("/Helvetica"),
        }
    )
    fonts = DictionaryObject({NameObject("/F1"): writer._add_object(font)})
    page[NameObject("/Resources")] = DictionaryObject({NameObject("/Font"): fonts})
    content = DecodedStreamObject()
    content.set_data("\n".join(operators).encode())
    page[NameObject("/Contents")] = writer._add_object(content)
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue(), squeeze("".join(left + right))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="time per file and extractor")
    args = parser.parse_args()
    files = sorted(DOCUMENTS.glob("**/*.pdf"))
    rows: dict[str, dict[str, float]] = {}
    for path in files:
        data = path.read_bytes()
        pages = len(PdfReader(io.BytesIO(data)).pages)
        print(f"timing {path.name} ({pages} pages) …", flush=True)
        rows[path.relative_to(DOCUMENTS).as_posix()] = {
            "pages": pages,
            **pages_per_s(data, pages, args.seconds),
        }
    probes = probe_scores()
    two_column, expected = two_column_pdf()
    in_order = {label: squeeze(f(two_column)) == expected for label, f in EXTRACTORS.items()}
    print_table(rows, probes, in_order)
    results = HERE / "results"
    results.mkdir(exist_ok=True)
    out = results / f"pdf-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps({"files": rows, "probes": probes, "two_column": in_order}, indent=2))


def print_table(
    rows: dict[str, dict[str, float]],
    probes: dict[str, tuple[int, int]],
    in_order: dict[str, bool],
) -> None:
    ours, plain = EXTRACTORS
    print(f"\n{'file':48} {'pages':>5} {'feilun pages/s':>15} {'pypdf pages/s':>14} {'ratio':>6}")
    for name, row in rows.items():
        print(
            f"{name:48} {row['pages']:>5.0f} {row[ours]:>15.1f} {row[plain]:>14.1f} "
            f"{row[ours] / row[plain]:>5.2f}x"
        )
    # Each file weighs by its page count: pages of all files / time over all of them.
    total = {label: sum(r["pages"] / r[label] for r in rows.values()) for label in EXTRACTORS}
    pages = sum(r["pages"] for r in rows.values())
    speed = {label: pages / total[label] for label in EXTRACTORS}
    print(f"{'all files':48} {pages:>5} {speed[ours]:>15.1f} {speed[plain]:>14.1f}")
    print()
    for label in EXTRACTORS:
        found, count = probes[label]
        order = "left then right" if in_order[label] else "interleaved"
        print(f"{label:18} Chinese probes {found}/{count}; two-column page: {order}")
    print(f"\npages/s ratio feilun / plain pypdf: {speed[ours] / speed[plain]:.2f}x")
    ratio = (probes[ours][0] / probes[ours][1]) / max(probes[plain][0] / probes[plain][1], 1e-9)
    print(f"probes recovered ratio feilun / plain pypdf: {ratio:.2f}x")


if __name__ == "__main__":
    main()
