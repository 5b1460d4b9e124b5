import pytest

from ctseg_helpers.cli import COMMAND_MODULES, available_commands, main


def test_every_documented_subcommand_is_installed():
    assert available_commands() == list(COMMAND_MODULES)


def test_help_lists_subcommands(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "inspect" in out and "check-data" in out


def test_no_command_prints_help_and_fails(capsys):
    assert main([]) == 2
    assert "usage: ctseg" in capsys.readouterr().out
