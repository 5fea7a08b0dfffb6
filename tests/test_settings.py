"""raymix.settings: flags and config files generated from settings dataclasses."""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass

import pytest

from raymix.settings import SettingsError, add_flags, build, nested, option, settings_of


@dataclass(kw_only=True)
class Inner:
    steps: int | None = option(None, default_text="the preset's", help="denoising steps")
    model: str = option("big", key="editor", help="which model")
    fast: bool = option(True, help="go fast")


@dataclass(kw_only=True)
class Outer:
    input: str = option(metavar="URI", help="what to read")
    size: int = option(224, help="output side")
    lam: float = option(0.2, help="blend factor")
    mode: str = option("a", choices=("a", "b"), help="a mode")
    extra: dict = option({}, key="options", help="free options")
    paths: list[str] = option([], help="repeatable paths")
    inner: Inner = nested(Inner, "the inner part")


def parse(argv, cls=Outer, **kw):
    parser = argparse.ArgumentParser(prog="test")
    flags = add_flags(parser, cls, config=True, **kw)
    return flags.build(parser.parse_args(argv))


def help_of(cls=Outer, **kw) -> str:
    parser = argparse.ArgumentParser(prog="test")
    add_flags(parser, cls, config=True, **kw)
    return " ".join(parser.format_help().split())  # argparse wraps lines


def test_a_field_becomes_a_flag_with_its_help_and_default():
    text = help_of()
    assert "--size N output side (default: 224)" in text
    assert "--lam X blend factor (default: 0.2)" in text
    assert "--mode {a,b} a mode (default: a)" in text
    assert "--input URI what to read (required)" in text
    assert "--steps N denoising steps (default: the preset's)" in text
    assert "--fast, --no-fast go fast (default: on)" in text
    assert "--options JSON free options (default: {})" in text
    assert "the inner part:" in text  # nested settings get a group of their own


def test_types_from_annotations():
    job = parse(["--input", "x", "--size", "64", "--lam", "1", "--no-fast", "--options", '{"k": 1}',
                 "--paths", "a", "--paths", "b", "--steps", "3"])
    assert (job.size, job.lam, job.extra, job.paths) == (64, 1.0, {"k": 1}, ["a", "b"])
    assert job.inner == Inner(steps=3, model="big", fast=False)
    assert parse(["--input", "x"]) == Outer(input="x")
    with pytest.raises(SystemExit):
        parse(["--input", "x", "--options", "[1]"])  # JSON, but not an object


def test_nested_setting_by_flag_and_by_file(tmp_path):
    assert parse(["--input", "x", "--editor", "small"]).inner.model == "small"
    (tmp_path / "a.yaml").write_text("input: x\neditor: small\nsteps: 7\noptions: {k: 2}\n")
    job = parse(["--config", str(tmp_path / "a.yaml")])
    assert (job.input, job.inner.model, job.inner.steps, job.extra) == ("x", "small", 7, {"k": 2})
    (tmp_path / "a.json").write_text(json.dumps({"input": "x", "rows-per-file": 3} | {"steps": 8}))
    with pytest.raises(SystemExit):  # rows-per-file is no setting of Outer
        parse(["--config", str(tmp_path / "a.json")])


def test_flags_override_the_file(tmp_path):
    (tmp_path / "a.yaml").write_text("input: x\nsteps: 7\nsize: 32\npaths: [a, b]\nfast: false\n")
    job = parse(["--config", str(tmp_path / "a.yaml"), "--steps", "9", "--paths", "c", "--fast"])
    assert (job.inner.steps, job.size, job.paths, job.inner.fast) == (9, 32, ["c"], True)


def test_unknown_and_bad_settings_error_clearly(tmp_path, capsys):
    with pytest.raises(SettingsError, match=r"unknown setting 'stepz' in f.yaml; did you mean steps\?"):
        build(Outer, {"input": "x", "stepz": 3}, where=" in f.yaml")
    with pytest.raises(SettingsError, match="size must be an integer"):
        build(Outer, {"input": "x", "size": "big"})
    with pytest.raises(SettingsError, match="mode must be one of a, b"):
        build(Outer, {"input": "x", "mode": "c"})
    with pytest.raises(SettingsError, match="missing required setting: --input"):
        build(Outer, {})
    (tmp_path / "bad.yaml").write_text("input: x\ninner: {steps: 3}\n")  # keys are flat, as the flags
    with pytest.raises(SystemExit):
        parse(["--config", str(tmp_path / "bad.yaml")])
    assert "unknown setting 'inner'" in capsys.readouterr().err


def test_build_takes_the_flag_keys_and_converts_text():
    job = build(Outer, {"input": "x", "editor": "small", "steps": "4", "fast": "off"})
    assert job.inner == Inner(steps=4, model="small", fast=False)


def test_command_defaults_names_and_exclusions():
    text = help_of(Inner, defaults={"editor": "tiny"}, names={"editor": "model"}, exclude=("fast",))
    assert "--model MODEL which model (default: tiny)" in text and "--fast" not in text and "--editor" not in text
    assert parse(["--steps", "2"], cls=Inner, defaults={"editor": "tiny"}, names={"editor": "model"}).model == "tiny"


def test_presets_sit_under_explicit_settings():
    @dataclass(kw_only=True)
    class WithPreset:
        preset: str | None = option(None, choices=("small",), presets={"small": {"size": 32, "lam": 0.5}},
                                    help="a recipe")
        size: int = option(224, help="side")
        lam: float = option(0.2, help="factor")

    assert build(WithPreset, {"preset": "small", "size": 64}) == WithPreset(preset="small", size=64, lam=0.5)


def test_keys_must_be_unique_across_the_tree():
    @dataclass(kw_only=True)
    class Clash:
        steps: int = option(1, help="outer steps")
        inner: Inner = nested(Inner, "inner")

    with pytest.raises(TypeError, match="key 'steps' is already used"):
        settings_of(Clash)


def test_every_field_needs_help():
    @dataclass
    class Bare:
        size: int = 3

    with pytest.raises(TypeError, match="not declared with option"):
        settings_of(Bare)
