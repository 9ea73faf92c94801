from __future__ import annotations

import re
import runpy
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"


def quickstart() -> tuple[str, str]:
    """Return the quickstart's code and the output the README says it prints."""
    section = README.read_text().split("## Quickstart", 1)[1].split("\n## ", 1)[0]
    code = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    output = re.search(r"```text\n(.*?)```", section, re.DOTALL)
    assert code is not None
    assert output is not None
    return code.group(1), output.group(1)


class TestReadme:
    """The README's example runs as written and prints what the README shows."""

    def test_quickstart(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """Run the quickstart as a script; compare its output with the README's."""
        code, expected = quickstart()
        assert len([line for line in code.splitlines() if line.strip()]) <= 30
        script = tmp_path / "quickstart.py"
        script.write_text(code)
        runpy.run_path(str(script), run_name="__main__")
        assert capsys.readouterr().out == expected
