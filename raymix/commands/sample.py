"""`raymix sample`: write a small ImageNet-like dataset generated offline."""

from __future__ import annotations

import argparse

HELP = "write a small generated ImageNet-like dataset (folder, parquet or webdataset)"


def _size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT, got {text!r}") from None
    if w < 8 or h < 8:
        raise argparse.ArgumentTypeError("width and height must be at least 8")
    return w, h


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, help="output folder or URI (s3://bucket/prefix, file://...)")
    parser.add_argument("--format", choices=("folder", "parquet", "webdataset"), default="folder",
                        help="layout to write (default: folder)")
    parser.add_argument("--classes", type=int, default=10, help="number of classes (default: 10)")
    parser.add_argument("--per-class", type=int, default=8, help="images per class (default: 8)")
    parser.add_argument("--seed", type=int, default=0, help="generator seed (default: 0)")
    parser.add_argument("--size", type=_size, default=(500, 375), metavar="WxH",
                        help="landscape image size (default: 500x375; some images are portrait)")
    parser.add_argument("--rows-per-shard", type=int, default=64,
                        help="rows per parquet/tar shard (default: 64)")


def run(args: argparse.Namespace) -> int:
    from raymix.tools.sample_data import write_sample

    if args.classes < 1 or args.per_class < 1:
        raise SystemExit("--classes and --per-class must be at least 1")
    summary = write_sample(
        args.out,
        format=args.format,
        classes=args.classes,
        per_class=args.per_class,
        seed=args.seed,
        size=args.size,
        rows_per_shard=args.rows_per_shard,
    )
    print(summary)
    return 0
