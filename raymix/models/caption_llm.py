"""The caption LLM: a transformers causal LM that turns AGA's engineered prompts into background captions.

Rahat et al., "AGA" (2024), Sec. 4.2 and 5.1: the prompt engine combines an instruction, a
background and a temporal phrase with the words to avoid, and "a SOTA LLM, Llama" (the
paper used Llama-2-13B-GPTQ from Hugging Face) writes the caption that Stable Diffusion
draws. This module is that LLM on a batch of prompts; building the prompts and checking
the captions is the caption engine's (:mod:`raymix.methods.aga_captions`).

Weights: a Hugging Face id, a local folder or an object-store mirror (safetensors only),
or random (``"tiny"``: a small ``LlamaForCausalLM`` with a byte-level tokenizer built
in-process, ``"random-full"``: the Llama-2-13B architecture). GPTQ checkpoints need a GPTQ
kernel package (e.g. ``gptqmodel``) on a GPU; an unquantized Llama-2 or any chat model
loads as well. A tokenizer with a chat template gets the prompt as one user message.

Sampling follows the model's ``generation_config`` (``do_sample``, ``temperature``,
``top_p``, ``top_k``) unless an option overrides it; the paper states none. Each row
samples from its own generator (one uniform per token, drawn up front on the CPU; the
token is the inverse of the row's cumulative distribution at it), so a row's caption
depends on its prompt and seed, not on its batch neighbours beyond the floating-point
rounding of a padded batch.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from raymix.models.aga_options import DEFAULT_LLM, CaptionLLMOptions
from raymix.models.editor import choose_device, choose_dtype
from raymix.models.random_models import build_random_causal_lm, random_size
from raymix.models.weights import resolve_model

__all__ = ["CaptionLLM", "load_causal_lm"]

log = logging.getLogger(__name__)


def load_causal_lm(model: str = DEFAULT_LLM, *, device="cpu", dtype=torch.float32, seed: int = 0,
                   cache_dir: str | None = None, storage_options: Mapping[str, Any] | None = None):
    """``(AutoModelForCausalLM, tokenizer)`` on ``device``, the tokenizer padding on the left."""
    size = random_size(model)
    if size:
        return build_random_causal_lm(size, seed=seed, device=device, dtype=dtype)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = resolve_model(model, cache_dir=cache_dir, storage_options=storage_options)
    tokenizer = AutoTokenizer.from_pretrained(path, padding_side="left")
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    net = AutoModelForCausalLM.from_pretrained(path, dtype=dtype, use_safetensors=True)
    return net.to(device).eval(), tokenizer


class CaptionLLM:
    """A causal LM on a batch: prompts and one seed (or CPU generator) per prompt in, generated text out.

    Keywords: the fields of :class:`~raymix.models.aga_options.CaptionLLMOptions` (``model``,
    ``max_new_tokens``, ``temperature``, ``top_p``, ``dtype``), plus ``device``,
    ``model_seed`` (random weights), ``cache_dir``, ``storage_options``; ``model_and_tokenizer``:
    a pair already built (benchmarks, tests); ``ignore_eos``: always generate ``max_new_tokens``
    (benchmarks: a fixed amount of work). :attr:`settings` holds the sampling values used.
    """

    def __init__(self, model: str = DEFAULT_LLM, *, device: str | None = None, model_seed: int = 0,
                 cache_dir: str | None = None, storage_options: Mapping[str, Any] | None = None,
                 model_and_tokenizer=None, ignore_eos: bool = False, **options):
        self.options = CaptionLLMOptions(model=model, **options)
        self.device = choose_device(device)
        self.dtype = choose_dtype(self.options.dtype, self.device)
        if model_and_tokenizer is None:
            if self.device.type == "cpu" and not torch.cuda.is_available():
                log.warning("CUDA is not available: captions on the CPU in float32")
            model_and_tokenizer = load_causal_lm(model, device=self.device, dtype=self.dtype, seed=model_seed,
                                                 cache_dir=cache_dir, storage_options=storage_options)
        self.model, self.tokenizer = model_and_tokenizer
        self.model.eval().requires_grad_(False)
        self.tokenizer.padding_side = "left"
        self.model_name = model
        config = self.model.generation_config
        self.settings = {
            "model": model,
            "do_sample": bool(getattr(config, "do_sample", False)) or self.options.temperature is not None
            or self.options.top_p is not None,
            "temperature": _first(self.options.temperature, getattr(config, "temperature", None), 1.0),
            "top_p": _first(self.options.top_p, getattr(config, "top_p", None), 1.0),
            "top_k": _first(getattr(config, "top_k", None), 0),
            "max_new_tokens": self.options.max_new_tokens,
            "chat_template": self.tokenizer.chat_template is not None,
        }
        eos = config.eos_token_id if config.eos_token_id is not None else self.tokenizer.eos_token_id
        self._eos = set() if ignore_eos else set(eos if isinstance(eos, (list, tuple)) else [eos])

    def format(self, prompt: str) -> str:
        """The text the model reads: the chat template around one user message, when the tokenizer has one."""
        if self.tokenizer.chat_template is None:
            return prompt
        return self.tokenizer.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False,
                                                  add_generation_prompt=True)

    def __call__(self, prompts: Sequence[str], generators_or_seeds: Sequence[torch.Generator | int]) -> list[str]:
        """The generated continuation of every prompt (special tokens and surrounding spaces removed)."""
        if len(prompts) != len(generators_or_seeds):
            raise ValueError("prompts and generators must have the same length")
        if not prompts:
            return []
        gens = [g if isinstance(g, torch.Generator) else torch.Generator().manual_seed(int(g))
                for g in generators_or_seeds]
        tokens = self._sample([self.format(p) for p in prompts], gens)
        return [self.tokenizer.decode(t, skip_special_tokens=True).strip() for t in tokens]

    @torch.inference_mode()
    def _sample(self, texts: list[str], gens: list[torch.Generator]) -> list[list[int]]:
        from transformers import DynamicCache

        enc = self.tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=True).to(self.device)
        mask = enc.attention_mask
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        cache = DynamicCache()
        logits = self.model(input_ids=enc.input_ids, attention_mask=mask, position_ids=positions,
                            cache=cache, use_cache=True).logits[:, -1]
        n, steps = len(texts), self.settings["max_new_tokens"]
        # One uniform per row and token, drawn up front from the row's generator on the CPU (the
        # numbers do not depend on the device), moved once: no host transfer of logits in the loop.
        uniforms = torch.stack([torch.rand(steps, generator=g) for g in gens]).to(self.device)
        out: list[list[int]] = [[] for _ in range(n)]
        done = [False] * n
        for step in range(steps):
            ids = self._choose(logits.float(), uniforms[:, step])
            for i, t in enumerate(ids.tolist()):
                if not done[i]:
                    if t in self._eos:
                        done[i] = True
                    else:
                        out[i].append(t)
            if all(done):
                break
            mask = torch.cat([mask, mask.new_ones((n, 1))], dim=1)
            positions = positions[:, -1:] + 1
            logits = self.model(input_ids=ids.unsqueeze(1), attention_mask=mask, position_ids=positions,
                                cache=cache, use_cache=True).logits[:, -1]
        return out

    def _choose(self, logits: torch.Tensor, uniforms: torch.Tensor) -> torch.Tensor:
        """The next token of every row: greedy, or sampled with temperature, top-k and top-p by
        inverting the cumulative distribution at the row's uniform draw."""
        s = self.settings
        if not s["do_sample"]:
            return logits.argmax(-1)
        logits = logits / max(s["temperature"], 1e-5)
        if s["top_k"]:
            kth = torch.topk(logits, min(s["top_k"], logits.shape[-1]), dim=-1).values[:, -1:]
            logits = logits.masked_fill(logits < kth, float("-inf"))
        sorted_probs, order = torch.softmax(logits, dim=-1).sort(dim=-1, descending=True)
        cumulative = sorted_probs.cumsum(-1)
        if s["top_p"] < 1.0:  # keep the smallest prefix whose mass reaches top_p (at least one token)
            sorted_probs = sorted_probs.masked_fill(cumulative - sorted_probs >= s["top_p"], 0.0)
            cumulative = sorted_probs.cumsum(-1)
        target = (uniforms * cumulative[:, -1]).unsqueeze(1)
        j = torch.searchsorted(cumulative, target, right=True).clamp(max=cumulative.shape[-1] - 1)
        return order.gather(1, j).squeeze(1)

def _first(*values):
    return next(v for v in values if v is not None)
