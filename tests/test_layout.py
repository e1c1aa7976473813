"""The house rules the code's layout keeps: a module over 400 lines says why in its docstring.
(The layers, api -> resolvers -> domain -> sources, are held by import-linter in `make lint`.)"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).parents[1]
PACKAGES = ("api", "resolvers", "domain", "sources", "bench")
MOST_LINES = 400
# The paragraph of the docstring that gives the reason.
REASON = "Over 400 lines:"


def test_a_module_over_400_lines_says_why() -> None:
    unexplained = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            source = path.read_text()
            if source.count("\n") <= MOST_LINES:
                continue
            docstring = ast.get_docstring(ast.parse(source)) or ""
            reason = docstring.partition(REASON)[2].strip()
            if len(reason) < 40:
                unexplained.append(str(path.relative_to(ROOT)))
    assert unexplained == [], f"over {MOST_LINES} lines without {REASON!r} in the docstring"
