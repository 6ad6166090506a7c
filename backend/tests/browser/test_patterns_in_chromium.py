"""The published text patterns read the same in ECMAScript as in Python: Chromium's own RegExp,
with the "u" flag JSON Schema 2020-12 asks validators to use, decides a set of edge strings
exactly as Python's re does (the service's rules agree with re: tests/http/test_text_rules.py).
"""

from __future__ import annotations

import html
import json
import re
from pathlib import Path

import pytest

from app.http.schemas import MULTI_LINE, SECRET, SINGLE_LINE, WHITE_SPACE
from tests.fixtures.browser import Chromium

# A browser per module: scheduled first (see conftest.py).
pytestmark = pytest.mark.slow

PATTERNS = [SINGLE_LINE.pattern, MULTI_LINE.pattern, SECRET.pattern]
SINGLES = [
    *(chr(code_point) for low, high in WHITE_SPACE for code_point in range(low, high + 1)),
    *"\x00\x01\x07\x1b\x1f\x7f\x80\x85\x9f\u00ad\u200b\u200c\u200d\u200e\u202a\u202e",
    *"\u2060\u2064\u2066\u2069\u206f\ufeff\ufff9\ufffb\ufffc",
    *"\ud800\udbff\udc00\udfff",
    *"a\u00e9\u4e2d\U0001f600\U0001f468\u200d\U0001f469",
]
# Each character alone, inside text, at either end, and a supplementary character (a surrogate
# pair to ECMAScript) beside it.
SAMPLES = sorted(
    {
        sample
        for character in SINGLES
        for sample in (
            character,
            f"a{character}b",
            f"{character} x",
            f"x {character}",
            f"\U0001f600{character}\U0001f600",
        )
    }
    | {"", " ", "\t", " \t\n ", "\ud83d", "\ude00\ud83d"}
)

PAGE = """<!doctype html>
<html><head><meta charset="utf-8"></head><body>
<script id="input" type="application/json">{input}</script>
<pre id="verdicts"></pre>
<script>
  const {{patterns, samples}} = JSON.parse(document.getElementById("input").textContent);
  const verdicts = patterns.map((pattern) => {{
    const regex = new RegExp(pattern, "u");
    return samples.map((sample) => regex.test(sample));
  }});
  document.getElementById("verdicts").textContent = JSON.stringify(verdicts);
</script>
</body></html>
"""


def test_chromium_reads_every_published_pattern_as_python_does(
    chromium: Chromium, tmp_path: Path
) -> None:
    # ensure_ascii writes unpaired surrogates as \\udXXX escapes, which JSON.parse keeps.
    document = json.dumps({"patterns": PATTERNS, "samples": SAMPLES}).replace("<", "\\u003c")
    page = tmp_path / "patterns.html"
    page.write_text(PAGE.format(input=document), encoding="ascii")

    rendered = chromium.render(page.as_uri())

    found = re.search(r'<pre id="verdicts">(.*?)</pre>', rendered.dom, re.DOTALL)
    assert found, rendered.dom[-2000:] + "\n".join(rendered.console)
    in_chromium = json.loads(html.unescape(found.group(1)))
    in_python = [
        [re.fullmatch(pattern, sample) is not None for sample in SAMPLES] for pattern in PATTERNS
    ]
    for pattern, chromium_verdicts, python_verdicts in zip(
        PATTERNS, in_chromium, in_python, strict=True
    ):
        differing = [
            ascii(sample)
            for sample, seen, expected in zip(
                SAMPLES, chromium_verdicts, python_verdicts, strict=True
            )
            if seen != expected
        ]
        assert differing == [], pattern
    # The samples do tell the patterns apart: each accepts some and refuses some.
    assert all(any(verdicts) and not all(verdicts) for verdicts in in_python)
