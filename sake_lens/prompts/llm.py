"""Paraphrases written by a language model: the instruction, robust parsing, a disk cache, and a
generator that runs a locally loaded chat model.

The instruction follows the SAKE paper's (an LLM writes unfinished sentences that mean the same
as the edit prompt, contain the subject and never the object), reworded. Replies are parsed
leniently (JSON or Python lists, numbered or bulleted lines, quotes, code fences) and every
sentence then passes the same checks as any other candidate
(:class:`~sake_lens.prompts.paraphrase.PromptFilter`). Raw replies are cached on disk, keyed by
a hash of everything that determines them, under ``$SAKE_LENS_CACHE/llm`` (default
``~/.cache/sake_lens/llm``).
"""

from __future__ import annotations

import abc
import ast
import hashlib
import json
import logging
import os
import re
import tempfile
from pathlib import Path
from typing import Any

from .._umask import chmod_like_new_file
from ..errors import DistributionError, GenerationError
from .paraphrase import ParaphraseGenerator, ParaphraseSet, PromptFilter
from .relations import match_relation
from .request import EditRequest

__all__ = [
    "build_instruction",
    "parse_paraphrases",
    "ResponseCache",
    "default_cache_dir",
    "LLMParaphraseGenerator",
    "LocalModelGenerator",
]

log = logging.getLogger(__name__)

QUESTION = "a question, not an unfinished sentence"
PLACEHOLDER = "placeholder or ellipsis"
_BULLET = re.compile(r"^\s*(?:[-*\u2022\u00b7]+|\(?\d{1,3}[.):]|[a-z][.)])\s+")
_TRAILING_BLANK = re.compile(
    r"(?:\s*(?:_{2,}|\.{3,}|\u2026|\[(?:blank|answer|object|mask)\]|<(?:blank|answer|object|mask)>))+\s*$",
    re.IGNORECASE,
)
_INNER_BLANK = re.compile(
    r"_{2,}|\.{3,}|\u2026|\[(?:blank|answer|object|mask|subject)\]", re.IGNORECASE
)


def default_cache_dir() -> Path:
    """``$SAKE_LENS_CACHE``, else ``$XDG_CACHE_HOME/sake_lens``, else ``~/.cache/sake_lens``.

    The same rule as :func:`sake_lens.model.loading.cache_dir` (repeated here so that the
    prompt modules do not import torch).
    """
    env = os.environ.get("SAKE_LENS_CACHE")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "sake_lens"


def build_instruction(request: EditRequest, k: int, round_index: int = 0) -> str:
    """The user message that asks a chat model for ``k`` paraphrases of ``request``."""
    text = (
        f'Write {k} different sentences that mean the same as "{request.text} ...", where the '
        f'missing word would be "{request.old}".\n'
        "Rules:\n"
        f'- Every sentence must contain "{request.subject}" exactly as written.\n'
        "- Every sentence must stop right before the missing word: leave it out, do not write "
        "a blank or dots.\n"
        f'- Never write "{request.old}".\n'
        "- Vary the wording and the sentence structure.\n"
        "- Write one sentence per line, with no numbering and no other text."
    )
    if round_index:
        text += f"\nThis is batch {round_index + 1}: avoid the most common phrasings."
    return text


def _strip_fences(text: str) -> str:
    text = text.strip()
    if text.startswith("```"):
        text = re.sub(r"^```[\w-]*\s*", "", text)
        text = re.sub(r"\s*```\s*$", "", text)
    return text


def _as_list(text: str) -> list[str] | None:
    start, end = text.find("["), text.rfind("]")
    if start < 0 or end <= start:
        return None
    chunk = text[start : end + 1]
    for loader in (json.loads, ast.literal_eval):
        try:
            value = loader(chunk)
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            continue
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return value
    return None


def _clean_line(line: str) -> str:
    line = line.strip()
    line = _BULLET.sub("", line).strip()
    line = line.rstrip(",").strip()
    if len(line) >= 2 and line[0] == line[-1] and line[0] in "\"'`":
        line = line[1:-1].strip()
    line = _TRAILING_BLANK.sub("", line).strip()
    return line.rstrip(" .;:,").strip(" \"'`")


def parse_paraphrases(
    text: str, subject: str | None = None
) -> tuple[list[str], list[tuple[str, str]]]:
    """Parse an LLM reply into candidate sentences; never raises.

    Accepts a JSON or Python list of strings, or one sentence per line (bullets, numbers,
    quotes, code fences and trailing blanks such as "___" or "..." are removed). ``{}`` in a
    sentence is replaced by ``subject``. Returns (candidates, dropped) where dropped holds
    (line, reason) for questions and sentences with a blank in the middle.

    Returns:
        ``(kept sentences, [(dropped sentence, reason), ...])``.

    Example:
        >>> parse_paraphrases('1. "X speaks ___"\\n2. What does X speak?')
        (['X speaks'], [('2. What does X speak?', 'a question, not an unfinished sentence')])
    """
    if not isinstance(text, str):
        return [], [(repr(text), "reply is not text")]
    text = _strip_fences(text)
    items = _as_list(text) if text.lstrip().startswith("[") else None
    raw = items if items is not None else text.splitlines()
    out: list[str] = []
    dropped: list[tuple[str, str]] = []
    for item in raw:
        for line in str(item).splitlines() or [""]:
            if not line.strip():
                continue
            clean = _clean_line(line)
            if subject is not None and "{}" in clean:
                clean = clean.replace("{}", subject)
            if not clean:
                continue
            if clean.endswith("?"):
                dropped.append((line.strip(), QUESTION))
            elif _INNER_BLANK.search(clean):
                dropped.append((line.strip(), PLACEHOLDER))
            else:
                out.append(clean)
    return out, dropped


class ResponseCache:
    """LLM replies on disk, one JSON file per request, keyed by the request's SHA-256.

    Corrupt or unreadable entries count as misses (and are logged); writes are atomic.
    """

    def __init__(self, directory: str | os.PathLike[str] | None = None) -> None:
        self.directory = Path(directory) if directory is not None else default_cache_dir() / "llm"

    @staticmethod
    def key(payload: dict[str, Any]) -> str:
        blob = json.dumps(payload, sort_keys=True, ensure_ascii=False, default=str)
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()

    def _path(self, key: str) -> Path:
        return self.directory / key[:2] / f"{key}.json"

    def get(self, payload: dict[str, Any]) -> str | None:
        path = self._path(self.key(payload))
        if not path.is_file():
            return None
        try:
            entry = json.loads(path.read_text(encoding="utf-8"))
            reply = entry["response"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("Ignoring unreadable cache entry %s (%s)", path, exc)
            return None
        return reply if isinstance(reply, str) else None

    def put(self, payload: dict[str, Any], response: str) -> None:
        path = self._path(self.key(payload))
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=path.parent)
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(
                    {"request": payload, "response": response}, f, ensure_ascii=False, default=str
                )
            chmod_like_new_file(tmp)  # mkstemp makes it 0600; a cache may be shared
            os.replace(tmp, path)
        except OSError as exc:
            log.warning(
                "Could not write the LLM cache entry %s (%s); continuing uncached", path, exc
            )


class LLMParaphraseGenerator(ParaphraseGenerator):
    """Shared logic of LLM generators: rounds of requests, disk cache, parsing, checks.

    Subclasses implement :meth:`_payload` (everything that determines the reply, JSON-able)
    and :meth:`_complete` (payload -> reply text).

    Args:
        per_request: sentences asked for in one request.
        max_rounds: at most this many requests per ``generate`` call.
        cache_dir: folder of the disk cache (default ``$SAKE_LENS_CACHE/llm``); ``False``
            turns the disk cache off.
        include_request: the request's own prompt comes first.
    """

    def __init__(
        self,
        *,
        per_request: int = 20,
        max_rounds: int = 5,
        cache_dir: str | os.PathLike[str] | bool | None = None,
        include_request: bool = True,
        cache_size: int = 256,
    ) -> None:
        super().__init__(cache_size=cache_size)
        if per_request < 1 or max_rounds < 1:
            raise DistributionError(
                f"per_request={per_request} and max_rounds={max_rounds} must both be >= 1."
            )
        self.per_request = per_request
        self.max_rounds = max_rounds
        self.include_request = include_request
        if cache_dir is False:
            self.disk_cache: ResponseCache | None = None
        elif cache_dir is None or cache_dir is True:
            self.disk_cache = ResponseCache()
        else:
            self.disk_cache = ResponseCache(Path(cache_dir))
        self.requests_made = 0  # replies not served from the disk cache

    @abc.abstractmethod
    def _payload(self, request: EditRequest, seed: int, round_index: int) -> dict[str, Any]:
        """Everything that determines the reply (cache key; JSON-able)."""

    @abc.abstractmethod
    def _complete(self, payload: dict[str, Any]) -> str:
        """Ask the model; return the reply text or raise GenerationError."""

    def _reply(self, payload: dict[str, Any]) -> str:
        if self.disk_cache is not None:
            cached = self.disk_cache.get(payload)
            if cached is not None:
                return cached
        reply = self._complete(payload)
        self.requests_made += 1
        if self.disk_cache is not None:
            self.disk_cache.put(payload, reply)
        return reply

    def _generate(
        self, request: EditRequest, n: int, seed: int, exclude: tuple[str, ...]
    ) -> ParaphraseSet:
        filt = PromptFilter(request, exclude)
        if self.include_request:
            filt.add(request.text)
        notes: list[str] = []
        rounds = 0
        while len(filt.kept) < n and rounds < self.max_rounds:
            reply = self._reply(self._payload(request, seed, rounds))
            rounds += 1
            candidates, dropped = parse_paraphrases(reply, request.subject)
            for line, reason in dropped:
                filt.drop(line, reason)
            if not candidates and not dropped:
                filt.drop(reply[:200], "reply has no sentences")
            for candidate in candidates:
                filt.add(candidate)
        if len(filt.kept) < n:
            notes.append(
                f"{len(filt.kept)} of {n} prompts after {rounds} request(s); raise max_rounds, "
                "use a stronger model, or combine with TemplateBankGenerator."
            )
        relation = match_relation(request.prompt, objects=(request.old, request.new))
        return self._result(request, filt, n, seed, relation, notes)


class LocalModelGenerator(LLMParaphraseGenerator):
    """Paraphrases from a chat/instruct model loaded in this process.

    ``model`` is a TransformerLens ``TransformerBridge`` (as returned by
    :func:`sake_lens.model.loading.load_model`) or a Hugging Face causal LM; ``tokenizer``
    defaults to ``model.tokenizer``. The instruction is wrapped with the tokenizer's chat
    template. Generation never uses the KV cache by default (``use_cache=False``): DESIGN.md
    measured that cached generation is wrong once a bridge is booted around a model (also
    through the underlying HF model). On a bridge the underlying HF model
    (``model.original_model``) generates, so steering hooks on the bridge do not affect it.

    Sampling is seeded (``torch.manual_seed`` inside a forked RNG state, so the caller's RNG is
    untouched).
    """

    name = "local-model"

    def __init__(
        self,
        model: Any,
        *,
        tokenizer: Any = None,
        max_new_tokens: int = 400,
        temperature: float = 0.8,
        top_p: float = 0.95,
        use_cache: bool = False,
        model_name: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.model = model
        self.tokenizer = tokenizer if tokenizer is not None else getattr(model, "tokenizer", None)
        if self.tokenizer is None:
            raise GenerationError(
                "LocalModelGenerator needs a tokenizer: pass tokenizer=... or a model with a "
                "`.tokenizer` attribute (a TransformerBridge has one)."
            )
        if max_new_tokens < 1 or temperature <= 0 or not 0 < top_p <= 1:
            raise GenerationError(
                f"max_new_tokens={max_new_tokens} must be >= 1, temperature={temperature} > 0 "
                f"and top_p={top_p} in (0, 1]."
            )
        self.max_new_tokens = max_new_tokens
        self.temperature = temperature
        self.top_p = top_p
        self.use_cache = use_cache
        self.model_name = model_name or self._model_name(model)

    @staticmethod
    def _model_name(model: Any) -> str:
        for attr in ("sake_lens_model_id",):
            if getattr(model, attr, None):
                return str(getattr(model, attr))
        cfg = getattr(model, "cfg", None) or getattr(model, "config", None)
        for attr in ("model_name", "_name_or_path", "name_or_path"):
            if cfg is not None and getattr(cfg, attr, None):
                return str(getattr(cfg, attr))
        return type(model).__name__

    def _config_key(self) -> tuple[Any, ...]:
        return (
            self.model_name,
            self.max_new_tokens,
            self.temperature,
            self.top_p,
            self.per_request,
            self.max_rounds,
            self.include_request,
        )

    def _payload(self, request: EditRequest, seed: int, round_index: int) -> dict[str, Any]:
        messages = [
            {"role": "user", "content": build_instruction(request, self.per_request, round_index)}
        ]
        return {
            "backend": "local",
            "model": self.model_name,
            "messages": messages,
            "seed": seed * 1000 + round_index,
            "max_new_tokens": self.max_new_tokens,
            "temperature": self.temperature,
            "top_p": self.top_p,
        }

    def _chat_text(self, messages: list[dict[str, str]]) -> str:
        tokenizer: Any = self.tokenizer
        if getattr(tokenizer, "chat_template", None):
            return tokenizer.apply_chat_template(
                messages, tokenize=False, add_generation_prompt=True
            )
        log.warning("The tokenizer has no chat template; using a plain 'User:/Assistant:' prompt.")
        return f"User: {messages[-1]['content']}\nAssistant:"

    def _complete(self, payload: dict[str, Any]) -> str:
        import torch

        tokenizer: Any = self.tokenizer
        text = self._chat_text(payload["messages"])
        ids = tokenizer(text, add_special_tokens=False, return_tensors="pt")["input_ids"]
        hf = getattr(self.model, "original_model", None)
        runner = hf if hf is not None else self.model
        device = next(runner.parameters()).device if hasattr(runner, "parameters") else "cpu"
        ids = ids.to(device)
        pad = tokenizer.pad_token_id
        if pad is None:
            pad = tokenizer.eos_token_id
        dev = torch.device(device)
        try:
            with torch.random.fork_rng(devices=[dev] if dev.type == "cuda" else []):
                torch.manual_seed(int(payload["seed"]))
                with torch.no_grad():
                    if hf is not None or not hasattr(self.model, "hook_dict"):
                        out = runner.generate(
                            input_ids=ids,
                            attention_mask=torch.ones_like(ids),
                            do_sample=True,
                            temperature=self.temperature,
                            top_p=self.top_p,
                            max_new_tokens=self.max_new_tokens,
                            use_cache=self.use_cache,
                            pad_token_id=pad,
                        )
                    else:  # a hooked model without an underlying HF model
                        out = self.model.generate(
                            ids,
                            max_new_tokens=self.max_new_tokens,
                            do_sample=True,
                            temperature=self.temperature,
                            top_p=self.top_p,
                            use_past_kv_cache=self.use_cache,
                            return_type="tokens",
                            verbose=False,
                        )
        except (RuntimeError, ValueError, TypeError) as exc:
            raise GenerationError(
                f"Local generation with {self.model_name} failed ({exc}). Pass a chat model "
                "whose tokenizer has a chat template, or use TemplateBankGenerator."
            ) from exc
        return tokenizer.decode(out[0, ids.shape[1] :], skip_special_tokens=True)
