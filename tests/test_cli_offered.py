"""OfferingGroup (messagebus/cli/_offered.py): commands offered only while a check passes."""

from __future__ import annotations

import click
import pytest
from click.shell_completion import ShellComplete

from messagebus.cli._offered import OfferingGroup


@click.command()
def always() -> None:
    """An ordinary command."""
    click.echo("always ran")


@click.command()
def sometimes() -> None:
    """A command offered while the check passes."""
    click.echo("sometimes ran")


def group(offered: bool) -> OfferingGroup:
    made = OfferingGroup("tool")
    made.add_command(always)
    made.offer(sometimes, when=lambda: offered, why_not="not here")
    return made


class TestOfferingGroup:
    """Listing, looking up, running and completing follow the check."""

    @pytest.mark.parametrize(
        ("offered", "names"), [(True, ["always", "sometimes"]), (False, ["always"])]
    )
    def test_list_commands(self, offered: bool, names: list[str]) -> None:
        """Listed exactly while offered, sorted among the others."""
        tool = group(offered)
        assert tool.list_commands(click.Context(tool)) == names

    @pytest.mark.parametrize("offered", [True, False])
    def test_get_command(self, offered: bool) -> None:
        """Found by name exactly while offered; an ordinary command always."""
        tool = group(offered)
        context = click.Context(tool)
        assert tool.get_command(context, "always") is always
        assert tool.get_command(context, "sometimes") is (sometimes if offered else None)

    def test_runs_while_offered(self) -> None:
        """Offered, the command runs as any other."""
        with pytest.raises(SystemExit) as exit_:
            group(True).main(["sometimes"], prog_name="tool")
        assert exit_.value.code == 0

    def test_usage_error_says_why(self) -> None:
        """Not offered, naming it is a usage error with the reason."""
        with pytest.raises(click.UsageError, match=r"^No such command 'sometimes': not here$"):
            group(False).main(["sometimes"], prog_name="tool", standalone_mode=False)

    @pytest.mark.parametrize(("offered", "names"), [(True, ["sometimes"]), (False, [])])
    def test_completion(self, offered: bool, names: list[str]) -> None:
        """Shell completion offers it exactly while it is offered."""
        completion = ShellComplete(group(offered), {}, "tool", "_TOOL_COMPLETE")
        assert [item.value for item in completion.get_completions([], "so")] == names

    def test_completion_after_it_never_fails(self) -> None:
        """Completing after a command not offered is no error (a shell shows none)."""
        completion = ShellComplete(group(False), {}, "tool", "_TOOL_COMPLETE")
        values = [item.value for item in completion.get_completions(["sometimes"], "")]
        assert "sometimes" not in values
