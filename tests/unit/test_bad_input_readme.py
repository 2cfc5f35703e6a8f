"""README "Bad input" lists exactly the cases of tests/integration/test_bad_input.py, and each says what the user sees."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _case_ids() -> list[str]:
    source = (ROOT / "tests" / "integration" / "test_bad_input.py").read_text()
    return re.findall(r'^    Case\("([a-z0-9-]+)"', source, flags=re.M)


def _readme_rows() -> dict[str, str]:
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Bad input") :]
    section = section[: section.index("\n## ", 4)]
    return {m.group(1): m.group(2).strip() for m in re.finditer(r"^\| `([a-z0-9-]+)` \|[^|]*\|(.+)\|\s*$", section, flags=re.M)}


def test_readme_bad_input_table_matches_the_tests():
    ids, rows = _case_ids(), _readme_rows()
    assert len(ids) >= 40
    assert sorted(ids) == sorted(rows), (
        f"in tests, not README: {sorted(set(ids) - set(rows))}; in README, not tests: {sorted(set(rows) - set(ids))}"
    )
    assert all(rows[i] for i in ids), "every row says what the user sees"
