"""Settings dataclasses as command-line flags and config files: each setting written once.

A setting is a dataclass field carrying its default and its help text::

    @dataclass(kw_only=True)
    class MixJob(JobSpec):
        size: int = option(224, help="output side: images are centre-cropped to it")
        method_options: dict = option({}, key="options", help="method constructor options")

    @dataclass(kw_only=True)
    class DiffuseMixJob(JobSpec):
        editor: EditorOptions = nested(EditorOptions, "editing (InstructPix2Pix, GPU)")

From these, :func:`add_flags` makes the flags and :meth:`Flags.build` the dataclass.

**One name per setting.** A setting's *key* is its field name, or the ``key=`` it declares.
The key is the config-file key, the flag is the key with dashes (``rows_per_file``:
``--rows-per-file``), and ``--chain-options``-style dicts use the same keys. The fields of a
:func:`nested` dataclass are flattened into the same namespace (``--steps`` sets
``job.editor.steps``), so keys are unique across a settings tree; a clash is an error when
the flags are built.

**Types** come from the annotations: ``int``, ``float``, ``str``, ``bool`` (``--flag`` /
``--no-flag``), any of them ``| None``, ``dict`` (a JSON object) and ``list[str]`` (a
repeatable flag).

**Layers**, lowest first: the dataclass defaults, a preset (a field declared with
``presets=``: its value names a set of other settings), the config file (``--config
FILE``, JSON or YAML, flat ``key: value``), then the flags. A dict or list given by a
higher layer replaces the lower one's whole.

Standard library only (PyYAML is imported when a YAML file is read), so a command can
print its help without importing torch or Ray.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import difflib
import json
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = ["option", "nested", "Setting", "SettingsError", "settings_of", "build", "load_file", "add_flags", "Flags"]

_MISSING = dataclasses.MISSING
_SCALARS = (int, float, str, bool)


class SettingsError(ValueError):
    """A setting that is unknown, missing, or of the wrong type."""


def option(default: Any = _MISSING, *, help: str, choices: Sequence | Callable[[], Sequence] | None = None,
           key: str | None = None,
           metavar: str | None = None, default_text: str | None = None, required: bool = False,
           presets: Mapping[str, Mapping[str, Any]] | None = None) -> Any:
    """A settings field: ``default`` (none: the setting is required), its ``help`` text, and
    optionally ``choices`` (or a function returning them, read each time the flags are
    built: e.g. the registry's method names, which grow when a method is registered), the ``key`` users type (default: the field name), the
    ``metavar`` of its flag, ``default_text`` (how help shows the default, e.g. "the
    preset's" for ``None``), ``required`` (the command line needs it although Python
    callers may leave the default) and ``presets`` (name -> settings applied under the
    explicit ones when this field names one)."""
    if choices is not None and not callable(choices):
        choices = tuple(choices)
    metadata = {"help": help, "choices": choices, "key": key,
                "metavar": metavar, "default_text": default_text, "required": required, "presets": presets}
    if isinstance(default, (dict, list)):
        return dataclasses.field(default_factory=lambda: copy.deepcopy(default), metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def storage_options_option() -> Any:
    """``--storage-options``, as every job takes it."""
    return option(None, default_text="from the AWS_* environment or RAYMIX_STORAGE_OPTIONS",
                  help='fsspec options for object storage, e.g. \'{"endpoint_url": "http://minio:9000"}\'')


def address_option() -> Any:
    """``--address``, as every job takes it."""
    return option(None, default_text="RAY_ADDRESS, as `ray job submit` sets it; else a local Ray",
                  help="Ray cluster address")


def verbose_option() -> Any:
    """``--verbose``, as every job takes it."""
    return option(False, help="show Ray's logs and progress here instead of in the log folder")


def nested(cls: type, title: str) -> Any:
    """A field holding another settings dataclass (default: its defaults); ``title`` heads
    its flags in ``--help``."""
    return dataclasses.field(default_factory=cls, metadata={"nested": True, "title": title})


@dataclasses.dataclass(frozen=True)
class Setting:
    """One leaf setting of a settings tree."""

    key: str  # config-file key and argparse dest
    path: tuple[str, ...]  # attribute path from the root dataclass
    type: type  # int, float, str, bool, dict or list
    optional: bool  # None allowed
    default: Any  # _MISSING: required
    help: str
    group: str | None  # the title of the nested dataclass it is in; None at the root
    choices: tuple | None = None
    metavar: str | None = None
    default_text: str | None = None
    required: bool = False
    presets: Mapping[str, Mapping[str, Any]] | None = None

    @property
    def flag(self) -> str:
        return "--" + self.key.replace("_", "-")

    @property
    def is_required(self) -> bool:
        return self.required or self.default is _MISSING


def _field_default(f: dataclasses.Field) -> Any:
    if f.default is not _MISSING:
        return f.default
    if f.default_factory is not _MISSING:
        return f.default_factory()
    return _MISSING


def _base_type(annotation: Any, where: str) -> tuple[type, bool]:
    """``(base type, optional)`` of an annotation such as ``int | None`` or ``list[str]``."""
    optional = False
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        optional = len(args) < len(typing.get_args(annotation))
        if len(args) != 1:
            raise TypeError(f"{where}: a setting has one type (or that type | None), got {annotation}")
        annotation = args[0]
    base = typing.get_origin(annotation) or annotation
    if base is list and typing.get_args(annotation) not in ((), (str,)):
        raise TypeError(f"{where}: list settings hold strings, got {annotation}")
    if base not in (*_SCALARS, dict, list):
        raise TypeError(f"{where}: unsupported setting type {annotation}")
    return base, optional


def settings_of(cls: type) -> dict[str, Setting]:
    """Every leaf setting of the dataclass ``cls`` (nested ones flattened), by key."""
    out: dict[str, Setting] = {}
    _collect(cls, (), None, out)
    return out


def _collect(cls: type, prefix: tuple[str, ...], group: str | None, out: dict[str, Setting]) -> None:
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        where = f"{cls.__name__}.{f.name}"
        if f.metadata.get("nested"):
            _collect(hints[f.name], (*prefix, f.name), f.metadata["title"], out)
            continue
        if "help" not in f.metadata:
            raise TypeError(f"{where} is not declared with option(..., help=...)")
        base, optional = _base_type(hints[f.name], where)
        key = f.metadata["key"] or f.name
        if key in out:
            raise TypeError(f"{where}: key {key!r} is already used by {'.'.join(out[key].path)}")
        out[key] = Setting(key=key, path=(*prefix, f.name), type=base, optional=optional, default=_field_default(f),
                           help=f.metadata["help"], group=group, choices=_choices(f.metadata["choices"]),
                           metavar=f.metadata["metavar"], default_text=f.metadata["default_text"],
                           required=f.metadata["required"], presets=f.metadata["presets"])


def _choices(choices) -> tuple | None:
    return tuple(choices()) if callable(choices) else choices


# -- values ---------------------------------------------------------------------------------

def _convert(setting: Setting, value: Any) -> Any:
    """``value`` (from a file, a dict or a flag's text) as the setting's type; SettingsError if it is not one."""
    if value is None:
        if setting.optional:
            return None
        raise SettingsError(f"{setting.key} cannot be null")
    kind = setting.type
    if isinstance(value, str) and kind is not str:
        value = _from_text(setting, value)
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if kind is list and isinstance(value, str):
        value = [value]
    ok = isinstance(value, kind) and not (kind is int and isinstance(value, bool))
    if kind is list:
        ok = ok and all(isinstance(v, str) for v in value)
    if not ok:
        raise SettingsError(f"{setting.key} must be {_type_name(setting)}, got {value!r}")
    if setting.choices is not None and value not in setting.choices:
        raise SettingsError(f"{setting.key} must be one of {', '.join(map(str, setting.choices))}; got {value!r}")
    return value


def _from_text(setting: Setting, text: str) -> Any:
    kind = setting.type
    try:
        if kind is bool:
            return {"true": True, "false": False, "on": True, "off": False}[text.lower()]
        if kind is dict:
            value = json.loads(text)
            if not isinstance(value, dict):
                raise ValueError("not a JSON object")
            return value
        if kind in (int, float):
            return kind(text)
    except (KeyError, ValueError) as err:
        raise SettingsError(f"{setting.key} must be {_type_name(setting)}, got {text!r} ({err})") from None
    return text


def _type_name(setting: Setting) -> str:
    names = {int: "an integer", float: "a number", str: "a string", bool: "true or false",
             dict: "a JSON object", list: "a list of strings"}
    return names[setting.type] + (" or null" if setting.optional else "")


def _unknown(keys, known: Mapping[str, Setting], where: str) -> SettingsError:
    lines = []
    for key in keys:
        close = difflib.get_close_matches(key, known, n=3)
        lines.append(f"unknown setting {key!r}{where}" + (f"; did you mean {' or '.join(close)}?" if close else ""))
    return SettingsError("; ".join(lines) + f" (known: {', '.join(sorted(known))})")


def build(cls: type, values: Mapping[str, Any], *, where: str = "", settings: Mapping[str, Setting] | None = None):
    """An instance of the settings dataclass ``cls`` from flat ``values`` (keys as in
    :func:`settings_of`; dashes read as underscores), over its presets and defaults.

    Raises :class:`SettingsError` for an unknown key, a value of the wrong type or a
    missing required setting; ``where`` (e.g. " in job.yaml") goes into the message.
    """
    settings = settings if settings is not None else settings_of(cls)
    values = {k.replace("-", "_"): v for k, v in values.items()}
    unknown = [k for k in values if k not in settings]
    if unknown:
        raise _unknown(unknown, settings, where)
    values = {k: _convert(settings[k], v) for k, v in values.items()}
    for key, setting in settings.items():
        if setting.presets and values.get(key) is not None:
            values = {**setting.presets[values[key]], **values}
    _check_required(settings, values, command_line=False)
    tree: dict = {}
    for key, value in values.items():
        node = tree
        for name in settings[key].path[:-1]:
            node = node.setdefault(name, {})
        node[settings[key].path[-1]] = value
    return _instantiate(cls, tree)


def _check_required(settings: Mapping[str, Setting], values: Mapping[str, Any], *, command_line: bool) -> None:
    """Settings without a default must be given; on the command line, those declared ``required`` too."""
    missing = [s.flag for k, s in settings.items()
               if (s.is_required if command_line else s.default is _MISSING) and values.get(k, "") == ""]
    if missing:
        raise SettingsError(f"missing required setting{'s' * (len(missing) > 1)}: {', '.join(missing)}")


def _instantiate(cls: type, tree: dict):
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name in tree:
            value = tree[f.name]
            kwargs[f.name] = _instantiate(hints[f.name], value) if f.metadata.get("nested") else value
    return cls(**kwargs)


def load_file(path: str) -> dict[str, Any]:
    """The flat settings of a ``.json``, ``.yaml`` or ``.yml`` file (a mapping at the top)."""
    text = Path(path).read_text()
    suffix = Path(path).suffix.lower()
    if suffix == ".json":
        data = json.loads(text)
    elif suffix in (".yaml", ".yml"):
        import yaml

        data = yaml.safe_load(text)
    else:
        raise SettingsError(f"{path}: a config file is .json, .yaml or .yml")
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise SettingsError(f"{path}: expected a mapping of settings at the top, got {type(data).__name__}")
    return data


# -- flags ----------------------------------------------------------------------------------

def _shown_default(setting: Setting) -> str:
    if setting.is_required:
        return "required"
    if setting.default_text is not None:
        return f"default: {setting.default_text}"
    value = setting.default
    if setting.type is bool and value is not None:
        return f"default: {'on' if value else 'off'}"
    if value is None:
        return "default: none"
    if isinstance(value, (dict, list)):
        return f"default: {json.dumps(value)}"
    return f"default: {value}"


_METAVARS = {int: "N", float: "X", dict: "JSON"}


def _add_argument(group, setting: Setting) -> None:
    text = f"{setting.help} ({_shown_default(setting)})".replace("%", "%%")
    kwargs: dict[str, Any] = {"dest": setting.key, "default": argparse.SUPPRESS, "help": text}
    if setting.type is bool:
        kwargs["action"] = argparse.BooleanOptionalAction
    else:
        kwargs["type"] = _flag_type(setting)
        if setting.choices is not None:
            kwargs["choices"] = setting.choices
        if setting.type is list:
            kwargs["action"] = "append"
        if setting.choices is None:
            kwargs["metavar"] = setting.metavar or _METAVARS.get(setting.type)
    group.add_argument(setting.flag, **kwargs)


def _flag_type(setting: Setting):
    def convert(text: str):
        try:
            return _from_text(setting, text) if setting.type is not list else text
        except SettingsError as err:
            raise argparse.ArgumentTypeError(str(err)) from None

    convert.__name__ = _type_name(setting)  # what argparse names in "invalid ... value"
    return convert


class Flags:
    """The flags :func:`add_flags` added, and how to turn the parsed ones back into a dataclass."""

    def __init__(self, cls: type, parser: argparse.ArgumentParser, settings: dict[str, Setting],
                 defaults: Mapping[str, Any], config: bool):
        self.cls, self.parser, self.settings, self.defaults, self.config = cls, parser, settings, defaults, config

    def values(self, args: argparse.Namespace) -> dict[str, Any]:
        """The settings given: this command's defaults, then the config file, then the flags."""
        given = dict(self.defaults)
        path = getattr(args, "config", None) if self.config else None
        if path:
            given.update(self._file(path))
        given.update({k: getattr(args, k) for k in self.settings if hasattr(args, k)})
        return given

    def build(self, args: argparse.Namespace):
        """The dataclass the parsed ``args`` describe; a usage error (exit 2) if they do not."""
        where = f" in {args.config}" if self.config and getattr(args, "config", None) else ""
        try:
            values = self.values(args)
            _check_required(self.settings, values, command_line=True)
            return build(self.cls, values, where=where, settings=self.settings)
        except (SettingsError, ValueError) as err:  # ValueError: the dataclass's own checks
            self.parser.error(str(err))

    def _file(self, path: str) -> dict[str, Any]:
        try:
            return load_file(path)
        except (OSError, ValueError) as err:
            self.parser.error(f"cannot read config file {path}: {err}")


def add_flags(parser: argparse.ArgumentParser, cls: type, *, exclude: Sequence[str] = (),
              defaults: Mapping[str, Any] | None = None, names: Mapping[str, str] | None = None,
              config: bool = False, title: str | None = None) -> Flags:
    """Add one flag per setting of ``cls`` to ``parser`` (in a group headed ``title`` if
    given; nested ones in a group each) and, with ``config``, ``--config FILE``.
    For this command only: ``exclude`` leaves keys out
    (the command sets them itself), ``defaults`` replaces some defaults (shown in
    ``--help``), ``names`` gives some settings another key (old key -> new key)."""
    settings = settings_of(cls)
    for key in (*exclude, *(defaults or {}), *(names or {})):
        if key not in settings:
            raise TypeError(f"{cls.__name__} has no setting {key!r}")
    settings = {k: s for k, s in settings.items() if k not in exclude}
    for key, value in (defaults or {}).items():
        settings[key] = dataclasses.replace(settings[key], default=value, default_text=None)
    names = dict(names or {})
    for new in names.values():
        if new in settings:
            raise TypeError(f"{cls.__name__}: key {new!r} is already used by {'.'.join(settings[new].path)}")
    settings = {names.get(k, k): dataclasses.replace(s, key=names[k]) if k in names else s
                for k, s in settings.items()}
    defaults = {names.get(k, k): v for k, v in (defaults or {}).items()}
    if config:
        parser.add_argument("--config", metavar="FILE", default=None,
                            help="settings file (.json, .yaml): `key: value` per setting, keys as the flags "
                                 "without dashes (rows_per_file: 500); flags override it (default: none)")
    groups: dict[str | None, Any] = {None: parser.add_argument_group(title) if title else parser}
    for setting in settings.values():
        if setting.group not in groups:
            groups[setting.group] = parser.add_argument_group(setting.group)
        _add_argument(groups[setting.group], setting)
    return Flags(cls, parser, settings, defaults, config)
