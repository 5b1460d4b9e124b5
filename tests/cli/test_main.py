import errno

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


# --- the system refuses a file: one line, exit status 2 -------------------------------------------


def _run_with(monkeypatch, error):
    """Run ``ctseg convert`` with its work replaced by a function that raises ``error``."""

    def fake_run(args):
        raise error

    monkeypatch.setattr("ctseg_helpers.cli.convert.run", fake_run)
    return main(["convert", "scan.nii", "out/scan.h5"])


@pytest.mark.parametrize(
    ("error", "message"),
    [
        (
            PermissionError(errno.EACCES, "Permission denied", "out/scan.h5"),
            "out/scan.h5: Permission denied; choose an output folder you can write to (or make the input readable)",
        ),
        (
            OSError(errno.EROFS, "Read-only file system", "out/scan.h5"),
            "out/scan.h5: Read-only file system; choose an output folder on a disk you can write to",
        ),
        (
            OSError(errno.ENOSPC, "No space left on device", "out/scan.h5"),
            "out/scan.h5: No space left on device; free disk space or choose an output folder on another disk",
        ),
        pytest.param(
            OSError(getattr(errno, "EDQUOT", 0), "Disk quota exceeded", "out/scan.h5"),
            "out/scan.h5: Disk quota exceeded; free disk space or choose an output folder on another disk",
            marks=pytest.mark.skipif(not hasattr(errno, "EDQUOT"), reason="no disk quotas on this system"),
        ),
        (
            PermissionError(errno.EACCES, "Unable to create file (name = 'out/scan.h5', errno = 13)"),
            "[Errno 13] Unable to create file (name = 'out/scan.h5', errno = 13); "
            "choose an output folder you can write to",
        ),
        (PermissionError("not allowed"), "not allowed; choose an output folder you can write to"),
    ],
    ids=["EACCES", "EROFS", "ENOSPC", "EDQUOT", "no-filename", "no-errno"],
)
def test_refused_files_print_one_line_naming_the_path(monkeypatch, capsys, error, message):
    assert _run_with(monkeypatch, error) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {message}") and err.count("\n") == 1


def test_other_os_errors_are_not_hidden(monkeypatch):
    with pytest.raises(FileNotFoundError):
        _run_with(monkeypatch, FileNotFoundError(errno.ENOENT, "No such file or directory", "scan.nii"))
    with pytest.raises(OSError, match="Input/output error"):
        _run_with(monkeypatch, OSError(errno.EIO, "Input/output error", "scan.nii"))
