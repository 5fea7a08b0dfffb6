"""Arrow schemas of the rows (column names: :mod:`raymix.schema`)."""

from __future__ import annotations

import pyarrow as pa

from raymix.schema import CLASS_NAME, IMAGE, KEY, LABEL, METHOD, PARAMS, REASON, REPLICA, SEED, SOURCE, SOURCE_KEY, STAGE

INPUT_SCHEMA = pa.schema(
    [
        pa.field(KEY, pa.string(), nullable=False),
        pa.field(IMAGE, pa.binary()),
        pa.field(LABEL, pa.int64()),
        pa.field(CLASS_NAME, pa.string()),
        pa.field(SOURCE, pa.string()),
        pa.field(STAGE, pa.string()),
        pa.field(REASON, pa.string()),
    ]
)

HF_IMAGE_TYPE = pa.struct([pa.field("bytes", pa.binary()), pa.field("path", pa.string())])

OUTPUT_SCHEMA = pa.schema(
    [
        pa.field(IMAGE, HF_IMAGE_TYPE),
        pa.field(LABEL, pa.int64()),
        pa.field(CLASS_NAME, pa.string()),
        pa.field(KEY, pa.string(), nullable=False),
        pa.field(SOURCE_KEY, pa.string()),
        pa.field(METHOD, pa.string()),
        pa.field(REPLICA, pa.int32()),
        pa.field(PARAMS, pa.string()),
        pa.field(SEED, pa.int64()),
    ]
)

QUARANTINE_SCHEMA = pa.schema(
    [*(pa.field(c, pa.string()) for c in (KEY, SOURCE, STAGE, REASON, SOURCE_KEY)), pa.field(REPLICA, pa.int32())]
)
