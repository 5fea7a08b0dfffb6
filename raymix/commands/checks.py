"""Checks a job's settings before Ray starts: each mistake is one line that says what to do.

:func:`validate` runs them for ``raymix mix|diffusemix|train`` (and ``jobs/*.py``): the
input exists and holds images, the output can be written, object storage has credentials,
``--replicas`` is at least 1, method options name real constructor arguments and presets,
and training's ``--num-classes`` matches the input's class list. A failed check raises
:class:`UsageError`, which the command line prints as one line and exits 2 on
(``docs/io.md``, "Common mistakes"). The checks only list and stat; they read no image.
"""

from __future__ import annotations

import difflib
import inspect
import os
import posixpath
import tempfile
from collections import Counter
from collections.abc import Mapping

from raymix import registry

__all__ = ["UsageError", "validate", "check_replicas", "check_s3_credentials", "check_input", "check_output",
           "check_method_options", "train_classes", "first_line"]

S3_HELP = ("set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (and AWS_ENDPOINT_URL for MinIO or another "
           "S3-compatible store), or RAYMIX_STORAGE_OPTIONS / --storage-options; see docs/io.md")


class UsageError(ValueError):
    """A mistake in what the job was asked to do: printed as one line, exit status 2."""


def validate(job, given: Mapping) -> list[str]:
    """Check ``job`` (the settings of ``raymix mix``, ``diffusemix`` or ``train``) before Ray
    starts; ``given`` holds the settings the user gave (flags and config file). Returns lines
    to tell the user (e.g. a setting filled in from the input); raises :class:`UsageError`."""
    from raymix.pipeline.specs import JobSpec, MixJob
    from raymix.train.job import TrainJob

    if isinstance(job, TrainJob):
        return _validate_train(job, given)
    if isinstance(job, JobSpec):  # the output last: its check creates the folder
        check_replicas(job.replicas)
        if isinstance(job, MixJob):
            check_method_options(job.method, job.method_options, "--options")
        check_input(job.input, job.storage_options)
        check_output(job.output, job.storage_options)
    return []


def _validate_train(job, given: Mapping) -> list[str]:
    """The training job's checks: its inputs, checkpoint storage, online options and classes."""
    from raymix.train.config import parse_input

    if job.config.online:
        check_method_options(job.config.online, job.config.online_options, "--online-options")
    if job.config.miamix:
        check_method_options("miamix", job.config.miamix_options, "--miamix-options",
                             set_by_job=("num_classes", "label_smoothing"))
    plans = [check_input(parse_input(spec).source, job.storage_options, layout=job.layout) for spec in job.input]
    if job.val:
        check_input(job.val, job.storage_options, flag="--val", layout=job.layout)
    if job.chain_input:
        check_input(job.chain_input, job.storage_options, flag="--chain-input")
    notes = train_classes(job, plans, given_num_classes="num_classes" in given)
    if job.storage:  # last: its check creates the folder
        check_output(job.storage, job.storage_options, flag="--storage")
    return notes


def check_replicas(replicas: int) -> None:
    if replicas < 1:
        raise UsageError(f"--replicas {replicas}: give 1 or more (augmented images per input image)")


def _s3_credentials_found(options: Mapping) -> bool:
    """Whether S3 requests will be signed (or are anonymous on purpose): credentials in the
    fsspec options, else what botocore finds (environment, profile files, instance role)."""
    client = options.get("client_kwargs") or {}
    if options.get("anon") or options.get("key") or options.get("profile") or client.get("aws_access_key_id"):
        return True
    import botocore.session

    session = botocore.session.Session(profile=os.environ.get("AWS_PROFILE"))
    return session.get_credentials() is not None


def check_s3_credentials(uri: str, storage_options: dict | None, flag: str) -> None:
    """An ``s3://`` URI needs credentials (``raymix.io.storage`` resolves the options)."""
    from raymix.io import storage

    if uri.partition("://")[0].lower() not in storage.S3_PROTOCOLS or "://" not in uri:
        return
    try:
        options = storage.storage_options_for(uri, storage_options)
    except ValueError as err:  # RAYMIX_STORAGE_OPTIONS that is not a JSON object
        raise UsageError(f"{flag} {uri}: {err}") from None
    if not _s3_credentials_found(options):
        raise UsageError(f"{flag} {uri}: no S3 credentials found; {S3_HELP}")


#: How long the checks retry a storage error that may pass before naming it (the jobs'
#: own reads retry longer: ``raymix.io.storage.DEFAULT_RETRY_SECONDS``).
CHECK_RETRY_SECONDS = 10.0


def check_input(uri: str, storage_options: dict | None, *, flag: str = "--input", layout: str = "auto"):
    """``uri`` exists and holds images; returns its read plan (listed, nothing read)."""
    from raymix.io.readers import plan_read

    check_s3_credentials(uri, storage_options, flag)
    try:
        # a short retry: a wrong endpoint is named in seconds, a blip is still ridden out
        plan = plan_read(uri, layout=layout, storage_options=storage_options, retry_seconds=CHECK_RETRY_SECONDS)
    except FileNotFoundError:
        raise UsageError(f"{flag} {uri}: no such file or folder; check the path") from None
    except ValueError as err:  # the readers' words on what the layout lacks
        text = first_line(err)
        raise UsageError(f"{flag} {text}" if text.startswith(uri) else f"{flag} {uri}: {text}") from None
    except Exception as err:  # the store refused or could not be reached
        hint = "" if "://" not in uri else "; check the URL, the credentials and AWS_ENDPOINT_URL (docs/io.md)"
        raise UsageError(f"{flag} {uri}: cannot list it ({first_line(err)}){hint}") from None
    if plan.layout == "folder":
        _check_images(uri, [f for shard in plan.shards for f in shard.files], flag)
    return plan


def first_line(err: BaseException) -> str:
    """The first line of an error's message (its type's name when it has none); for an error
    raised in a Ray task, the task's own error (Ray's ``cause``) rather than Ray's header."""
    cause = getattr(err, "cause", None)
    if isinstance(cause, BaseException):
        err = cause
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def _check_images(uri: str, files: list[str], flag: str) -> None:
    """A class-folder tree needs at least one image file; name what it holds instead."""
    from raymix.io.wds import IMAGE_EXTENSIONS

    if not files:
        raise UsageError(f"{flag} {uri}: no files in its class folders; point it at a folder of class folders "
                         "of images, or at parquet or tar shards")
    extensions = Counter(posixpath.splitext(f)[1].lower() or "(no extension)" for f in files)
    if any(ext.lstrip(".") in IMAGE_EXTENSIONS for ext in extensions):
        return
    found = ", ".join(ext for ext, _ in extensions.most_common(5))
    raise UsageError(f"{flag} {uri}: {len(files)} file{'s' * (len(files) != 1)}, none an image ({found}); "
                     f"images end in .{', .'.join(IMAGE_EXTENSIONS[:5])}, ...")


def check_output(uri: str, storage_options: dict | None, *, flag: str = "--output") -> None:
    """A local output folder can be created and written (a temporary file, removed); an
    ``s3://`` one needs credentials (nothing is written there)."""
    from raymix.io import storage

    check_s3_credentials(uri, storage_options, flag)
    fs, path = storage.filesystem(uri, storage_options)
    if not storage.is_local(fs):
        return
    try:
        os.makedirs(path, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as err:
        raise UsageError(f"{flag} {uri}: cannot write there ({err.strerror or err}); choose a folder you can "
                         "write to") from None


def check_method_options(name: str, options: Mapping, flag: str, *, set_by_job: tuple = ("seed", "fractals")
                         ) -> None:
    """Every key of ``options`` is an argument of the method's constructor (less those the
    job sets itself, ``set_by_job``), and a ``preset`` is one of the method's presets."""
    entry = registry.method(name)
    params = inspect.signature(entry.load()).parameters
    if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        known = sorted(k for k in params if k not in ("self", *set_by_job))
        for key in options:
            if key not in known:
                close = difflib.get_close_matches(key, known, n=1)
                hint = f"did you mean {close[0]!r}? " if close else ""
                raise UsageError(f"{flag}: {name} has no option {key!r}; {hint}its options: {', '.join(known)}")
    preset = options.get("preset")
    if preset is not None and preset not in entry.presets:
        choices = ", ".join(entry.presets) or "none"
        raise UsageError(f"{flag}: {name} has no preset {preset!r}; its presets: {choices}")


#: Parquet shards whose footers :func:`parquet_max_label` reads (row-group statistics, no rows).
LABEL_SAMPLE_SHARDS = 8


def parquet_max_label(plan) -> int | None:
    """The largest label in the row-group statistics of the first parquet shards of ``plan``
    (``None``: not parquet, or no statistics)."""
    import pyarrow.parquet as pq

    from raymix.io.readers.parquet import label_column

    if plan.layout != "parquet":
        return None
    found = None
    for shard in plan.shards[:LABEL_SAMPLE_SHARDS]:
        with plan.fs.open(shard.path, "rb") as f:
            meta = pq.ParquetFile(f).metadata
        column = label_column(meta.schema.to_arrow_schema())
        if column is None:
            continue
        index = meta.schema.to_arrow_schema().get_field_index(column)
        for group in range(meta.num_row_groups):
            stats = meta.row_group(group).column(index).statistics
            if stats is not None and stats.has_min_max:
                found = max(int(stats.max), found if found is not None else int(stats.max))
    return found


def train_classes(job, plans: list, *, given_num_classes: bool) -> list[str]:
    """``--num-classes`` against the inputs' class lists: an error when it differs from the
    list (a head of the wrong width trains silently); filled in from the list when not given.
    Inputs without a class list: an error when a label in their parquet statistics does not
    fit the head."""
    lists = [(plan.uri, plan.classes) for plan in plans if plan.classes]
    if not lists:
        for plan in plans:
            top = parquet_max_label(plan)
            if top is not None and top >= job.config.num_classes:
                raise UsageError(f"--num-classes {job.config.num_classes}, but {plan.uri} has label {top}; "
                                 f"pass --num-classes {top + 1} or more")
        return []
    uri, classes = max(lists, key=lambda item: len(item[1]))
    found, num_classes = len(classes), job.config.num_classes
    if not given_num_classes:
        job.config.num_classes = found
        return [f"--num-classes {found}: from the class list of {uri} (give --num-classes to override)"]
    if num_classes != found:
        raise UsageError(f"--num-classes {num_classes}, but {uri} lists {found} classes; pass "
                         f"--num-classes {found} or leave it out to use the input's class list")
    return []
