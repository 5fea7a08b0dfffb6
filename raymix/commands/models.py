"""`raymix models`: stage model weights in object storage, and resolve them on a node.

``raymix models mirror --model ID|PATH --to s3://bucket/models/NAME`` copies a model from a
local folder or the local Hugging Face cache to object storage (safetensors, configs and
tokenizer files only; a manifest is written last). Jobs then take ``--editor
s3://bucket/models/NAME``: every node copies the mirror once into its local cache instead of
asking the hub, so a 50-node cluster reads the weights from its own bucket, not 50 times
from the internet. ``--download`` first fetches the model from the hub into the local cache
(with ``HF_HUB_OFFLINE=1`` only a model already cached is found).

``raymix models resolve SPEC`` prints what a job would load for SPEC: the local path of a
folder, the node-local copy of a mirror (made now if missing), or the hub id as is.
"""

from __future__ import annotations

import argparse
import os

HELP = "copy model weights to object storage (mirror) or to this node's cache (resolve)"

# What a model folder needs; the rest (pickle weights, READMEs, images) is never fetched.
DOWNLOAD_PATTERNS = ("*.safetensors", "*.json", "*.txt", "*.model")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="models_command", metavar="ACTION", required=True)

    mirror = sub.add_parser("mirror", help="copy a local folder or cached hub model to object storage",
                            description="Copy a model's safetensors weights, configs and tokenizer files from a "
                                        "local folder or the local Hugging Face cache to object storage.")
    mirror.add_argument("--model", required=True, metavar="ID|PATH",
                        help="a local model folder, or a Hugging Face id already in the local hub cache")
    mirror.add_argument("--to", required=True, metavar="URI", help="destination prefix, e.g. s3://bucket/models/ip2p")
    mirror.add_argument("--variant", metavar="NAME",
                        help="copy only this weight variant where a folder has it (e.g. fp16)")
    mirror.add_argument("--revision", metavar="REV", help="hub revision (branch, tag or commit); default main")
    mirror.add_argument("--download", action="store_true",
                        help="fetch the model from the hub into the local cache first (needs network; "
                             "with HF_HUB_OFFLINE=1 only a cached model is found)")

    resolve = sub.add_parser("resolve", help="print the local path a job would load a model from",
                             description="Print what a job loads for SPEC: a folder's path, the node-local copy "
                                         "of an object-store mirror (copied now if missing), or a hub id as is.")
    resolve.add_argument("spec", metavar="SPEC", help="a Hugging Face id, a local folder or an s3://... mirror")
    resolve.add_argument("--variant", metavar="NAME", help="weight variant to copy (e.g. fp16)")
    resolve.add_argument("--cache-dir", metavar="DIR",
                         help="node-local cache (default: $RAYMIX_MODEL_CACHE or ~/.cache/raymix/models)")


def run(args: argparse.Namespace) -> int:
    from raymix.models.weights import UnsafeWeightsError

    try:
        if args.models_command == "mirror":
            return _mirror(args)
        return _resolve(args)
    except (FileNotFoundError, UnsafeWeightsError) as err:
        raise SystemExit(f"raymix models {args.models_command}: {err}") from None


def _mirror(args: argparse.Namespace) -> int:
    from raymix.models.weights import mirror_model

    source = args.model
    if args.download:
        source = _download(args.model, args.revision)
    files = mirror_model(source, args.to, variant=args.variant, revision=args.revision)
    print(f"mirrored {len(files)} files of {args.model} to {args.to.rstrip('/')}")
    print(f"use it with: --editor {args.to.rstrip('/')}" + (f" (variant {args.variant})" if args.variant else ""))
    return 0


def _download(repo_id: str, revision: str | None) -> str:
    """Fetch ``repo_id`` into the local hub cache (safetensors and configs only); its folder.

    With ``HF_HUB_OFFLINE=1`` the hub client only looks in the local cache and raises
    ``FileNotFoundError`` (``LocalEntryNotFoundError``) when the model is not there.
    """
    if os.path.isdir(os.path.expanduser(repo_id)):
        return repo_id
    from huggingface_hub import snapshot_download

    return snapshot_download(repo_id, revision=revision, allow_patterns=list(DOWNLOAD_PATTERNS))


def _resolve(args: argparse.Namespace) -> int:
    from raymix.models.weights import resolve_model

    print(resolve_model(args.spec, cache_dir=args.cache_dir, variant=args.variant))
    return 0
