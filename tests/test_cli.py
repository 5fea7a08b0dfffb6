import subprocess
import sys

from raymix.cli import SUBCOMMANDS, build_parser


def test_every_subcommand_is_registered():
    parser = build_parser()
    help_text = parser.format_help()
    for name in SUBCOMMANDS:
        assert name in help_text


def test_console_entry_point_runs():
    out = subprocess.run([sys.executable, "-m", "raymix.cli", "--help"], capture_output=True, text=True, check=True)
    assert "raymix" in out.stdout
