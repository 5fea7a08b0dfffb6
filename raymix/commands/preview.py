"""`raymix preview`: a contact sheet of what a method does to a few images of a dataset."""

from __future__ import annotations

import argparse
import sys
import time

from raymix import registry, schema

HELP = "draw a contact sheet: a few originals and several augmented samples per method"

DEFAULT_EDITOR = registry.DEFAULT_MODELS["instructpix2pix"]
AGA_MODELS = {"detector": "grounding_dino_t", "segmenter": "sam_vit_h", "background_model": "sdxl_background",
              "llm": "llama2_13b_caption"}
PREVIEW_FRACTALS = "generated:32"


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    choices = (*registry.method_names(), "all")  # read now: a method may have been registered since import
    parser.add_argument("--method", required=True, choices=choices, metavar="NAME",
                        help=f"method to show: {', '.join(choices)}")
    parser.add_argument("--input", required=True, metavar="URI",
                        help="dataset: class-folder tree, parquet shards or WebDataset tars (path, file://, s3://)")
    parser.add_argument("--out", required=True, metavar="FILE",
                        help="sheet to write (.png, or .jpg/.jpeg; a local path or any fsspec URI)")
    parser.add_argument("--n", type=_positive, default=4, help="originals, from different classes when possible "
                        "(default: 4)")
    parser.add_argument("--samples", type=_positive, default=4, help="augmented samples per original (default: 4)")
    parser.add_argument("--seed", type=int, default=0, help="run seed; sample r is what a job with this seed writes "
                        "as replica r (default: 0)")
    parser.add_argument("--image-size", type=_positive, default=224,
                        help="side of the centre crop the methods run on (default: 224)")
    parser.add_argument("--tile", type=_positive, default=160, help="side of a tile on the sheet (default: 160)")
    parser.add_argument("--editor", default=None, metavar="ID|PATH|URI|tiny",
                        help=f"InstructPix2Pix model for DiffuseMix (default: {DEFAULT_EDITOR}); 'tiny' runs "
                        "offline with random weights, so its edits are noise")
    parser.add_argument("--steps", type=_positive, default=None,
                        help="denoising steps of the editor (default: 100 as in the paper; 20 for tiny) or of "
                        "AGA's background model (default: the pipeline's)")
    for flag, model in AGA_MODELS.items():
        parser.add_argument(f"--{flag.replace('_', '-')}", default=None, metavar="ID|PATH|URI|tiny",
                            help=f"AGA's {flag.replace('_', ' ')} (default: {registry.DEFAULT_MODELS[model]})"
                            + ("; 'none': template captions" if flag == "llm" else ""))
    parser.add_argument("--whole-image", action="store_true",
                        help="AGA: keep the whole image as the subject where the job's default quarantines it "
                        "(no box, an empty or full mask)")
    parser.add_argument("--fractals", default=PREVIEW_FRACTALS, metavar="SPEC",
                        help=f"fractal bank: generated, generated:N or a folder URI (default: {PREVIEW_FRACTALS}, "
                        "the first N fractals of the default generated bank)")
    parser.add_argument("--captions", action="store_true",
                        help="caption each tile with its main parameters (ops, blends, fractal id, prompt, mask, "
                        "lambda, label weights)")
    parser.add_argument("--layout", default="auto", choices=schema.LAYOUTS,
                        help="input layout (default: auto)")
    parser.add_argument("--threads", type=_positive, default=1,
                        help="torch CPU threads (default: 1: a preview's tensors are small, and on a busy machine "
                        "more threads mostly wait for each other; raise it to edit with a real model on a CPU)")
    parser.add_argument("--palette", action="store_true",
                        help="save a PNG with a dithered 256-colour palette (about a third of the size)")


def run(args: argparse.Namespace) -> int:
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    try:
        return _preview(args)
    finally:
        torch.set_num_threads(threads)


def _preview(args: argparse.Namespace) -> int:
    import json

    from raymix.io.storage import atomic_write, filesystem
    from raymix.tools.preview import draw_sheet, encode_sheet, sheet_layout
    from raymix.tools.preview_methods import (
        PreviewError, load_aga_models, load_editor, method_section, read_originals,
    )

    start = time.perf_counter()
    methods = registry.method_names() if args.method == "all" else (args.method,)
    try:
        originals, skipped = read_originals(args.input, args.n, size=args.image_size, layout=args.layout)
    except (OSError, ValueError) as err:
        raise SystemExit(f"raymix preview: cannot read {args.input}: {err}") from None
    for key, reason in skipped:
        print(f"raymix preview: skipped {key}: {reason}", file=sys.stderr)
    if not originals:
        raise SystemExit(f"raymix preview: no decodable image in {args.input}")
    if len(originals) < args.n:
        print(f"raymix preview: only {len(originals)} decodable images in {args.input}", file=sys.stderr)

    editor_name = args.editor or DEFAULT_EDITOR
    try:
        needs_editor = "diffusemix" in methods
        editor = load_editor(editor_name, seed=args.seed, steps=args.steps) if needs_editor else None
        aga_models = None
        if "aga" in methods:
            names = {flag: getattr(args, flag) or registry.DEFAULT_MODELS[model] for flag, model in AGA_MODELS.items()}
            aga_models = load_aga_models(names["detector"], names["segmenter"], names["background_model"],
                                         names["llm"], seed=args.seed, steps=args.steps, whole_image=args.whole_image)
        sections = [method_section(name, originals, args.samples, seed=args.seed, fractals=args.fractals,
                                   editor=aga_models if name == "aga" else editor, captions=args.captions)
                    for name in methods]
    except PreviewError as err:
        raise SystemExit(f"raymix preview: {err}") from None

    rows, headings, notes = [], {}, []
    for section in sections:
        if len(sections) > 1:
            headings[len(rows)] = section.heading
        rows.extend(section.rows)
        if section.note:
            notes.append(section.note)
    what = sections[0].heading if len(sections) == 1 else "all methods"
    title = f"{what}: seed {args.seed}, {args.image_size} px crops"
    if any(section.uses_fractals for section in sections):
        title += f", fractals {args.fractals}"
    note = " ".join(notes)
    layout = sheet_layout(rows, tile=args.tile, title=title, note=note, headings=headings)
    sheet = draw_sheet(rows, layout)
    meta = {"method": args.method, "input": args.input, "seed": args.seed, "image_size": args.image_size,
            "samples": args.samples, "fractals": args.fractals, "keys": [o.key for o in originals],
            "editor": editor_name if editor is not None else None,
            "aga_models": aga_models.names if aga_models is not None else None, "rows": len(rows),
            "columns": layout.columns, "tile": args.tile, "boxes": layout.boxes}
    text = {"Software": "raymix preview", "Description": f"{title}. {note}".strip(), "raymix:preview": json.dumps(meta)}
    data = encode_sheet(sheet, "JPEG" if args.out.lower().endswith((".jpg", ".jpeg")) else "PNG",
                        palette=args.palette, text=text)
    fs, path = filesystem(args.out)
    atomic_write(fs, path, data)
    elapsed = time.perf_counter() - start
    print(f"wrote {args.out}: {what}, {len(originals)} originals x {args.samples} samples, "
          f"{len(rows)} rows x {layout.columns} columns, {sheet.width}x{sheet.height} px, "
          f"{len(data) / 1024:.0f} KiB ({elapsed:.1f} s)")
    return 0
