"""AGA's caption LLM through Ray's own LLM batch stages (``ray.data.llm``), imported only when chosen.

- ``--llm-engine vllm``: ``vLLMEngineProcessorConfig`` -- vLLM engines on GPU actors (a GPU
  cluster with vLLM installed; ``--llm`` names the model, e.g. ``TheBloke/Llama-2-13B-GPTQ``).
- ``--llm-engine http``: ``HttpRequestProcessorConfig`` -- an OpenAI-compatible chat completions
  endpoint the user already runs (``--llm-url``), e.g. vLLM's or TGI's server.

Both write each row's answer to ``caption_raw``, as :class:`raymix.pipeline.aga_stages.CaptionLLMStage`
does, and keep every other column. Each row asks with its own sampling seed
(:func:`llm_seed`); a row already failed asks for one token of an empty chat, so every row
passes the stage and keeps its place in the counts.
"""

from __future__ import annotations

from raymix import schema
from raymix.ops.rng import sample_seed
from raymix.pipeline.aga_stages import CAPTION_PROMPT, CAPTION_RAW
from raymix.pipeline.specs import AGAJob

__all__ = ["llm_seed", "chat_request", "ray_llm_processor"]


def llm_seed(seed: int, source_key: str, replica: int) -> int:
    """The sampling seed of a row for an engine that takes integer seeds (31 bits)."""
    return sample_seed(seed, source_key, replica, salt="caption") % 2**31


def chat_request(row: dict, job: AGAJob) -> tuple[list[dict], dict]:
    """The chat messages and sampling settings of one row."""
    failed = bool(row.get(schema.REASON))
    prompt = "" if failed else str(row[CAPTION_PROMPT])
    key = str(row.get(schema.SOURCE_KEY, row.get(schema.KEY)))
    sampling = {"max_tokens": 1 if failed else job.llm.max_new_tokens,
                "seed": llm_seed(job.seed, key, int(row.get(schema.REPLICA, 0)))}
    if job.llm.temperature is not None:
        sampling["temperature"] = job.llm.temperature
    if job.llm.top_p is not None:
        sampling["top_p"] = job.llm.top_p
    return [{"role": "user", "content": prompt or "."}], sampling


def _answer(row: dict, text: str) -> dict:
    """The row with the LLM's answer as ``caption_raw`` (the engine's own columns ride along until
    the compositing stage, which writes only the output columns)."""
    return {**row, CAPTION_RAW: "" if row.get(schema.REASON) else str(text or "")}


def ray_llm_processor(job: AGAJob):
    """A ``ray.data.llm`` processor for ``job.llm_engine`` (``"vllm"`` or ``"http"``): call it on a
    Dataset."""
    from ray.data import llm

    if job.llm_engine == "vllm":
        config = llm.vLLMEngineProcessorConfig(
            model_source=job.llm.model, batch_size=job.llm_batch_size, concurrency=job.llm_actors or 1,
            engine_kwargs={"max_model_len": 4096},
        )

        def preprocess(row):
            messages, sampling = chat_request(row, job)
            return {**row, "messages": messages, "sampling_params": sampling}

        return llm.build_processor(config, preprocess=preprocess,
                                   postprocess=lambda row: _answer(row, row.get("generated_text", "")))
    if job.llm_engine == "http":
        if not job.llm_url:
            raise ValueError("--llm-engine http needs --llm-url (an OpenAI-compatible chat completions URL)")
        config = llm.HttpRequestProcessorConfig(url=job.llm_url, batch_size=job.llm_batch_size,
                                                concurrency=job.llm_actors or 1)

        def preprocess(row):
            messages, sampling = chat_request(row, job)
            return {**row, "payload": {"model": job.llm.model, "messages": messages, **sampling}}

        def postprocess(row):
            response = row.get("http_response") or {}
            choices = response.get("choices") or [{}]
            return _answer(row, (choices[0].get("message") or {}).get("content", ""))

        return llm.build_processor(config, preprocess=preprocess, postprocess=postprocess)
    raise ValueError(f"unknown LLM engine {job.llm_engine!r}")
