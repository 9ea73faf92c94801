from __future__ import annotations

import re
import runpy
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"

RUNNABLE = [
    "Quickstart",
    "Unit of work and the transactional outbox",
    "Process managers",
    "Scheduled messages",
    "One database for the outbox, the inbox and the event log",
    "Services, transports and the worker",
    "Configuration",
]


def example(title: str) -> tuple[str, str]:
    """Return the section's first code block and the output the README says it prints."""
    section = README.read_text().split(f"\n## {title}\n", 1)[1].split("\n## ", 1)[0]
    code = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    output = re.search(r"```text\n(.*?)```", section, re.DOTALL)
    assert code is not None
    assert output is not None
    return code.group(1), output.group(1)


class TestReadme:
    """The README's examples run as written and print what the README shows."""

    @pytest.mark.parametrize("title", RUNNABLE)
    def test_example(self, title: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """Run the section's example as a script; compare its output with the README's."""
        code, expected = example(title)
        script = tmp_path / "example.py"
        script.write_text(code)
        runpy.run_path(str(script), run_name="__main__")
        assert capsys.readouterr().out == expected

    def test_quickstart_is_short(self) -> None:
        """The quickstart stays within 30 lines of code."""
        code, _ = example("Quickstart")
        assert len([line for line in code.splitlines() if line.strip()]) <= 30
