r"""PDF parser (pypdf): the text of every page in reading order, with where each page starts.

Pages are joined by a blank line ("\\n\\n"); `Parsed.page_starts[i]` is the offset of page i+1.
pypdf's plain extraction follows the content stream and its layout mode follows the baselines, so
both interleave a two-column page line by line when its producer wrote it row by row. We take each
text run's position from pypdf's visitor and, when a page has a vertical gutter with body text on
both sides, put the left column before the right one. Decompression is capped per stream and per
document: a bomb is a `BadInput`, not an exhausted memory.
"""

from __future__ import annotations

import io
import itertools
import logging
import math
import statistics
import threading
import unicodedata
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from feilun.core.errors import BadInput
from feilun.data.parsing import Parsed, ParseOptions

logger = logging.getLogger(__name__)

MEDIA_TYPE = "application/pdf"
PAGE_SEPARATOR = "\n\n"
MAX_STREAM_BYTES = 64 << 20  # one decompressed stream (pypdf's own default is 75 MB)
MAX_DOCUMENT_BYTES = 512 << 20  # all decompressed page contents of one file together
MAX_PYPDF_WARNINGS = 3
# pypdf raises these (besides its own errors) on structures it cannot make sense of.
_MALFORMED = (ValueError, KeyError, TypeError, AttributeError, IndexError, RecursionError)


class PdfParser:
    """Text of a PDF with page offsets; see the module docstring for the rules."""

    def parse(self, data: bytes, name: str, options: ParseOptions) -> Parsed:
        """Text of the PDF `name`; BadInput when it is damaged, encrypted, a bomb or textless."""
        import pypdf

        _check_header(data, name)
        filters = ("zlib", "lzw", "run_length", "brotli", "jbig2", "array_based_stream")
        limits = {f"{f}_maximum_output_length": MAX_STREAM_BYTES for f in filters}
        with pypdf.apply_configuration(None, **limits), _pypdf_warnings() as repaired:
            try:
                parsed = _parse(data, name, options, repaired)
            except pypdf.errors.LimitReachedError as e:
                raise _bomb(name, str(e)) from e
        if repaired:
            more = len(repaired) - MAX_PYPDF_WARNINGS
            shown = "; ".join(repaired[:MAX_PYPDF_WARNINGS]) + (f" (+{more} more)" * (more > 0))
            parsed.warnings.append(f"pypdf worked around damage in the file: {shown}")
        return parsed


PARSER = PdfParser()


def _check_header(data: bytes, name: str) -> None:
    if not data:
        raise BadInput(f"{name} is empty (0 bytes)", "re-download or re-export the PDF")
    if b"%PDF-" not in data[:1024]:
        start = data[:16].decode("latin-1").encode("unicode_escape").decode()
        raise BadInput(
            f"{name} is not a PDF: it does not start with '%PDF-' (it starts with {start!r})",
            "check the file's real type and give it the right extension",
        )
    if b"%%EOF" not in data[-8192:]:  # some writers pad the end with a few KB of zeros
        raise BadInput(
            f"{name} is truncated: the '%%EOF' marker that ends every PDF is missing",
            "the download or copy was cut short; fetch the file again",
        )


def _parse(data: bytes, name: str, options: ParseOptions, repaired: list[str]) -> Parsed:
    import pypdf

    reader = _open(data, name, options)
    try:
        count = len(reader.pages)
    except (pypdf.errors.PyPdfError, *_MALFORMED) as e:
        raise _damaged(name, e) from e
    if count > options.max_pages:
        raise BadInput(
            f"{name} has {count} pages, over the limit of {options.max_pages}",
            "split it into smaller files, or raise the page limit (ParseOptions.max_pages)",
        )
    texts: list[str] = []
    warnings: list[str] = []
    fonts: dict[int, tuple[Any, Any]] = {}
    decoded_bytes = 0
    for number, page in enumerate(reader.pages, start=1):
        repaired_before = len(repaired)
        try:
            plain, spans, columns_from = _extract(page)
            textless = "" if plain.strip() else _textless(page, number)
            decoded_bytes += _release_contents(page)
        except pypdf.errors.LimitReachedError:
            raise
        except (pypdf.errors.PyPdfError, *_MALFORMED) as e:
            logger.debug("page %s of %s failed", number, name, exc_info=True)
            warnings.append(f"page {number} cannot be read ({type(e).__name__}: {e}); skipped")
            plain, spans, textless, columns_from = "", [], "", (0.0, 0.0)
        if textless and len(repaired) > repaired_before:
            textless = f"page {number} has no readable text: {repaired[-1]}"
        warnings += [textless] if textless else []
        if decoded_bytes > MAX_DOCUMENT_BYTES:
            raise _bomb(name, f"page contents reach {decoded_bytes} bytes by page {number}")
        texts.append(_in_reading_order(plain, spans, columns_from, fonts).strip())
    if not any(texts):
        raise BadInput(
            f"{name} has no text layer on any of its {count} pages (a scan, or images of text)",
            "OCR it first (for example `ocrmypdf in.pdf out.pdf`) and ingest the result",
        )
    starts = [0, *itertools.accumulate(len(t) + len(PAGE_SEPARATOR) for t in texts[:-1])]
    text = PAGE_SEPARATOR.join(texts)
    title = _title(reader, text)
    return Parsed(text, MEDIA_TYPE, title=title, pages=count, page_starts=starts, warnings=warnings)


def _open(data: bytes, name: str, options: ParseOptions) -> Any:
    import pypdf

    try:
        reader = pypdf.PdfReader(io.BytesIO(data), strict=False)
        if not reader.is_encrypted:
            return reader
        if options.password is None:
            if reader.decrypt(""):  # encrypted with an empty user password: opens like any PDF
                return reader
            raise BadInput(
                f"{name} is encrypted with a password",
                "pass its password (`--password`), or save an unencrypted copy",
            )
        if not reader.decrypt(options.password):
            raise BadInput(
                f"{name} is encrypted and the password given does not open it",
                "check the password (`--password`); it is case-sensitive",
            )
        return reader
    except pypdf.errors.DependencyError as e:
        raise BadInput(
            f"{name} uses an encryption this installation cannot decrypt: {e}",
            "install the data extra (`pip install 'feilun[data]'`, it brings `cryptography`)",
        ) from e
    except (pypdf.errors.PyPdfError, *_MALFORMED) as e:
        raise _damaged(name, e) from e


def _damaged(name: str, error: Exception) -> BadInput:
    return BadInput(
        f"{name} is a damaged PDF that cannot be read ({type(error).__name__}: {error})",
        "re-export it from the program that made it, or repair it (`qpdf in.pdf out.pdf`)",
    )


def _bomb(name: str, detail: str) -> BadInput:
    return BadInput(
        f"{name} decompresses to more than the parser allows "
        f"({MAX_STREAM_BYTES >> 20} MiB per stream, {MAX_DOCUMENT_BYTES >> 20} MiB per file): "
        f"{detail}",
        "a decompression bomb or a huge drawing; if you trust it, print it to a new PDF",
    )


def _textless(page: Any, number: int) -> str:
    resources = page.get("/Resources")
    resources = resources.get_object() if resources is not None else {}
    if resources.get("/XObject"):
        return f"page {number} has no text layer; OCR it first"
    return f"page {number} is blank"


def _release_contents(page: Any) -> int:
    """Decoded size of the page's content streams; drops pypdf's cached copies of them."""
    contents = page.get("/Contents")
    contents = contents.get_object() if contents is not None else None
    streams = contents if isinstance(contents, list) else [contents]
    size = 0
    for reference in streams:
        stream: Any = reference.get_object() if reference is not None else None
        decoded = getattr(stream, "decoded_self", None)
        if decoded is not None:
            size += len(decoded.get_data())
            stream.decoded_self = None
    return size


def _title(reader: Any, text: str) -> str:
    try:
        title = (reader.metadata or {}).get("/Title") or ""
    except Exception:  # broken metadata is no reason to drop the text
        logger.debug("unreadable PDF metadata", exc_info=True)
        title = ""
    title = " ".join(str(title).split()).removeprefix("Microsoft Word - ")
    placeholder = title.lower() in {"", "untitled", "(unspecified)"}
    if placeholder or title.lower().endswith((".doc", ".docx", ".dvi", ".tex", ".pdf")):
        title = next((line.strip() for line in text.splitlines() if line.strip()), "")
    return title[:200]


@contextmanager
def _pypdf_warnings() -> Iterator[list[str]]:
    """Distinct messages pypdf logs in this thread: what it repaired or skipped."""
    seen: list[str] = []
    thread = threading.get_ident()

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            message = record.getMessage()
            if record.thread == thread and len(seen) < 100 and message not in seen:
                seen.append(message)

    handler = Collect(logging.WARNING)
    pypdf_logger = logging.getLogger("pypdf")
    pypdf_logger.addHandler(handler)
    try:
        yield seen
    finally:
        pypdf_logger.removeHandler(handler)


# -- reading order ---------------------------------------------------------------------------

MIN_COLUMN_LINES = 3
MIN_COLUMN_SHARE = 0.2  # of the text's width: narrower "columns" are labels, a form, a table
MIN_GUTTER_EM = 0.8


@dataclass
class _Span:
    """One run of text as pypdf flushed it: its start on the page (points, y up) and its font."""

    text: str
    x0: float
    y: float
    size: float
    scale: float  # points per thousandth of an em, horizontally; 0 for turned text
    font: Any
    x1: float = 0.0  # measured only on pages that may have columns


def _extract(page: Any) -> tuple[str, list[_Span], tuple[float, float]]:
    """Plain text from pypdf, its runs, and the middle of the page where a column may start."""
    spans: list[_Span] = []

    def visit(text: str, cm: list[float], tm: list[float], font: Any, size: float) -> None:
        x = tm[4] * cm[0] + tm[5] * cm[2] + cm[4]
        y = tm[4] * cm[1] + tm[5] * cm[3] + cm[5]
        if not text.strip() or not all(map(math.isfinite, (x, y, size, *tm[:4], *cm[:4]))):
            return
        skew = abs(tm[1]) + abs(tm[2]) + abs(cm[1]) + abs(cm[2])
        if skew < 1e-6 and tm[0] * cm[0] > 0 and tm[3] * cm[3] > 0:
            spans.append(_Span(text, x, y, size * tm[3] * cm[3], size * tm[0] * cm[0] / 1000, font))
        else:  # turned or mirrored: placed where it starts, not measured
            spans.append(_Span(text, x, y, abs(size), 0.0, font))

    plain = str(page.extract_text(visitor_text=visit))
    left, width = float(page.mediabox.left), float(page.mediabox.width)
    return plain, spans, (left + 0.2 * width, left + 0.8 * width)


def _in_reading_order(
    plain: str, spans: list[_Span], columns_from: tuple[float, float], fonts: dict[int, Any]
) -> str:
    """The plain text, unless its runs interleave columns: then the runs column by column."""
    if sum(s.scale == 0 for s in spans) > len(spans) // 10:
        return plain  # a turned page: its columns, if any, are not side by side on x
    # Cheap test first: a column needs lines starting at one x in the middle of the page.
    starts = Counter(round(s.x0) for s in spans if columns_from[0] < s.x0 < columns_from[1])
    if not any(n + starts[x + 1] >= MIN_COLUMN_LINES for x, n in starts.items()):
        return plain
    for span in spans:
        # pypdf prefixes a space to a run it finds on the same line: not drawn, not measured.
        lines = span.text.strip().split("\n")
        span.x1 = span.x0 + span.scale * max(_text_width(span.font, t, fonts) for t in lines)
    ordered = _reading_order(spans, depth=2)
    if all(a is b for a, b in zip(ordered, spans, strict=True)):
        return plain
    return _render(ordered)


def _text_width(font: Any, text: str, fonts: dict[int, tuple[Any, Any]]) -> float:
    """Width of `text` in thousandths of an em: the font's own widths for simple fonts."""
    metrics = _font_metrics(font, fonts)
    if metrics is not None:
        return float(metrics.get_text_width(text))
    wide = sum(unicodedata.east_asian_width(c) in "WF" for c in text)
    return 1000.0 * wide + 500.0 * (len(text) - wide)


def _font_metrics(font: Any, fonts: dict[int, tuple[Any, Any]]) -> Any:
    # Cached per font dictionary; the dictionary is kept with it so its id is never reused.
    if id(font) not in fonts:
        metrics = None
        if hasattr(font, "get") and font.get("/Subtype") in ("/Type1", "/TrueType", "/MMType1"):
            from pypdf.generic._font import Font

            try:
                metrics = Font.from_font_resource(font)
            except Exception:  # odd widths: fall back to the estimate
                logger.debug("no usable widths in font %s", font.get("/BaseFont"), exc_info=True)
            if metrics is not None and len(metrics.character_widths) <= 1:
                metrics = None
        fonts[id(font)] = (font, metrics)
    return fonts[id(font)][1]


def _reading_order(spans: list[_Span], depth: int) -> list[_Span]:
    """Spans column by column, top band to bottom band; stream order inside a column."""
    gutter = _find_gutter(spans) if depth and len(spans) >= 2 * MIN_COLUMN_LINES else None
    if gutter is None:
        return spans
    start, end = gutter
    # Across: over the whole gutter (a title, a wide caption) or inside it (a centred page
    # number); these cut the page into bands. A line that pokes into the gutter stays put.
    across = [s for s in spans if (s.x0 < start) == (s.x1 > end)]
    left = [s for s in spans if s.x0 < start and s.x1 <= end]
    right = [s for s in spans if s.x0 >= start and s.x1 > end]
    cuts = sorted({round(s.y) for s in across}, reverse=True)
    ordered: list[_Span] = []
    for band in range(len(cuts) + 1):
        top = cuts[band - 1] if band else float("inf")
        bottom = cuts[band] if band < len(cuts) else float("-inf")
        for side in (left, right):
            inside = [s for s in side if bottom < round(s.y) <= top]
            ordered += _reading_order(inside, depth - 1)
        if band < len(cuts):
            ordered += [s for s in across if round(s.y) == cuts[band]]
    return ordered


def _find_gutter(spans: list[_Span]) -> tuple[float, float] | None:
    """The widest empty vertical strip with enough body text on both sides, if any."""
    low, high = min(s.x0 for s in spans), max(s.x1 for s in spans)
    width = int(high - low) + 1
    if not 20 <= width <= 20_000:  # no room for columns, or coordinates off any real page
        return None
    allowed = max(1, len(spans) // 10)  # spans that may cross: titles, a centred page number
    delta = [0] * (width + 2)
    for s in spans:  # cover[x] = spans with int(x0) <= x < ceil(x1), relative to `low`
        delta[int(s.x0 - low)] += 1
        delta[min(math.ceil(s.x1 - low), width + 1)] -= 1
    min_gutter = max(MIN_GUTTER_EM * statistics.median(s.size for s in spans), 4.0)
    best: tuple[float, float] | None = None
    cover, start = 0, None
    for x in range(width + 1):
        cover += delta[x]
        if cover <= allowed and start is None:
            start = x
        elif cover > allowed and start is not None:
            is_central = 0.2 * width < (start + x) / 2 < 0.8 * width
            is_wider = best is None or x - start > best[1] - best[0]
            is_gutter = is_central and is_wider and x - start >= min_gutter
            if is_gutter and _is_split(spans, low + start, low + x):
                best = (low + start, low + x)
            start = None
    return best


def _is_split(spans: list[_Span], start: float, end: float) -> bool:
    left = [s for s in spans if s.x1 <= start]
    right = [s for s in spans if s.x0 >= end]
    if not left or not right:
        return False
    full = max(s.x1 for s in spans) - min(s.x0 for s in spans)
    for side in (left, right):
        lines = {round(s.y) for s in side}
        extent = max(s.x1 for s in side) - min(s.x0 for s in side)
        if len(lines) < MIN_COLUMN_LINES or extent < MIN_COLUMN_SHARE * full:
            return False
    return True


def _render(spans: list[_Span]) -> str:
    """Text of spans in the given order: a new line wherever the baseline changes."""
    out: list[str] = []
    previous: _Span | None = None
    for span in spans:
        text = span.text.strip("\n")
        if previous is None:
            out.append(text.lstrip())
        elif abs(span.y - previous.y) > 0.5 * max(span.size, previous.size, 1.0):
            out.append("\n" + text.lstrip())
        elif out[-1][-1:].isspace() or text[:1].isspace():
            out.append(text)
        else:
            gap = span.x0 - previous.x1
            out.append((" " if gap > 0.15 * span.size else "") + text)
        previous = span
    return "\n".join(line.rstrip() for line in "".join(out).splitlines())
