"""Task-text embeddings: a safetensors cache of T5 encoder outputs, one entry per task string.

File format (`text_embeddings.safetensors`): for each text, tensor `embedding/<key>` float32
(max_length, d_text) with padded positions zeroed, and tensor `mask/<key>` bool (max_length,)
marking the real tokens; `<key>` is the first 16 hex digits of sha256(text). The metadata holds
`texts` (JSON {key: text}), `source` ("t5:<dir>" or "fallback"), `max_length` and `d_text`.

Embeddings come from a local T5 encoder directory (transformers `T5EncoderModel` + tokenizer, never
downloaded). Without one, `fallback_embedding` derives a deterministic pseudo-embedding from the text;
it is NOT a T5 embedding and only serves tests and tiny models.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterable
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

log = logging.getLogger(__name__)

T5_MAX_LENGTH = 512
FORMAT = "cosmos_policy.text_embeddings/1"
# Fallback values are scaled to roughly the magnitude of T5-XXL encoder outputs.
FALLBACK_SCALE = 0.2


def text_key(text: str) -> str:
    """Stable tensor-name key of a task text."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def fallback_embedding(text: str, d_text: int, max_length: int = T5_MAX_LENGTH) -> tuple[torch.Tensor, torch.Tensor]:
    """Deterministic (max_length, d_text) pseudo-embedding seeded from the text; NOT T5 (tests only)."""
    seed = int(hashlib.sha256(text.encode("utf-8")).hexdigest()[:15], 16)
    generator = torch.Generator().manual_seed(seed)
    num_tokens = min(max_length, len(text.split()) + 1)
    embedding = torch.zeros(max_length, d_text)
    embedding[:num_tokens] = FALLBACK_SCALE * torch.randn(num_tokens, d_text, generator=generator)
    mask = torch.zeros(max_length, dtype=torch.bool)
    mask[:num_tokens] = True
    return embedding, mask


@torch.no_grad()
def t5_embeddings(texts: list[str], t5_dir: str | Path, max_length: int = T5_MAX_LENGTH,
                  device: str = "cpu", batch_size: int = 8) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Encode texts with a local T5 encoder directory (config + weights + tokenizer files)."""
    from transformers import AutoTokenizer, T5EncoderModel

    t5_dir = Path(t5_dir)
    if not t5_dir.is_dir():
        raise FileNotFoundError(f"{t5_dir}: T5 encoder directory not found (expected config.json, weights and "
                                f"tokenizer files saved with save_pretrained)")
    tokenizer = AutoTokenizer.from_pretrained(t5_dir, local_files_only=True)
    encoder = T5EncoderModel.from_pretrained(t5_dir, local_files_only=True).to(device).eval()
    out: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    for start in range(0, len(texts), batch_size):
        batch = texts[start:start + batch_size]
        tokens = tokenizer(batch, max_length=max_length, padding="max_length", truncation=True,
                           return_tensors="pt")
        mask = tokens["attention_mask"].to(device).bool()
        hidden = encoder(input_ids=tokens["input_ids"].to(device), attention_mask=mask.long()).last_hidden_state
        hidden = hidden.float() * mask.unsqueeze(-1)
        for i, text in enumerate(batch):
            out[text] = (hidden[i].cpu(), mask[i].cpu())
    return out


class TextEmbeddingCache:
    """Task text -> (embedding (L, d_text) float32, mask (L,) bool), saved as safetensors."""

    def __init__(self, entries: dict[str, tuple[torch.Tensor, torch.Tensor]] | None = None,
                 source: str = "unknown"):
        self.entries: dict[str, tuple[torch.Tensor, torch.Tensor]] = dict(entries or {})
        self.source = source

    def __contains__(self, text: str) -> bool:
        return text in self.entries

    def __len__(self) -> int:
        return len(self.entries)

    @property
    def texts(self) -> list[str]:
        return list(self.entries)

    @property
    def d_text(self) -> int:
        return int(next(iter(self.entries.values()))[0].shape[-1])

    def get(self, text: str) -> tuple[torch.Tensor, torch.Tensor]:
        """Embedding and mask of a task; an unknown task raises with the fix."""
        if text not in self.entries:
            known = ", ".join(repr(t) for t in list(self.entries)[:5])
            raise KeyError(f"task {text!r} has no text embedding (cache has {len(self.entries)}: {known}); "
                           f"add it with `cosmos-policy embed-text --texts {text!r} ...`")
        return self.entries[text]

    def update(self, other: TextEmbeddingCache) -> None:
        self.entries.update(other.entries)

    def save(self, path: str | Path) -> Path:
        """Write the cache as safetensors (tensors + metadata with the texts)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tensors: dict[str, torch.Tensor] = {}
        keys: dict[str, str] = {}
        for text, (embedding, mask) in self.entries.items():
            key = text_key(text)
            keys[key] = text
            tensors[f"embedding/{key}"] = embedding.detach().float().contiguous()
            tensors[f"mask/{key}"] = mask.detach().bool().contiguous()
        first = next(iter(self.entries.values()), (torch.zeros(0, 0), None))[0]
        metadata = {"format": FORMAT, "source": self.source, "texts": json.dumps(keys),
                    "max_length": str(first.shape[0]), "d_text": str(first.shape[-1])}
        save_file(tensors, str(path), metadata=metadata)
        return path

    @classmethod
    def load(cls, path: str | Path) -> TextEmbeddingCache:
        """Read a cache written by `save`."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: text embedding cache not found "
                                    f"(create it with `cosmos-policy embed-text --texts ... --out {path}`)")
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
        if metadata.get("format") != FORMAT or "texts" not in metadata:
            raise ValueError(f"{path}: not a cosmos_policy text embedding file (metadata format "
                             f"{metadata.get('format')!r}, expected {FORMAT!r})")
        tensors = load_file(str(path))
        entries = {}
        for key, text in json.loads(metadata["texts"]).items():
            entries[text] = (tensors[f"embedding/{key}"], tensors[f"mask/{key}"])
        return cls(entries, source=metadata.get("source", "unknown"))


def build_text_cache(texts: Iterable[str], d_text: int, t5_dir: str | Path | None = None,
                     max_length: int = T5_MAX_LENGTH, device: str = "cpu") -> TextEmbeddingCache:
    """Embed texts with the local T5 encoder when given, else with the test-only fallback."""
    texts = sorted(set(texts))
    if t5_dir is not None:
        entries = t5_embeddings(texts, t5_dir, max_length=max_length, device=device)
        found = next(iter(entries.values()))[0].shape[-1] if entries else d_text
        if found != d_text:
            raise ValueError(f"{t5_dir}: T5 d_model is {found}, the network expects d_text={d_text} "
                             f"(use the T5 encoder the base model was trained with)")
        return TextEmbeddingCache(entries, source=f"t5:{t5_dir}")
    log.warning("text embeddings for %d task(s) are a deterministic hash-seeded fallback, NOT T5: "
                "use them only for tests and tiny models (pass --t5-dir for real training)", len(texts))
    entries = {text: fallback_embedding(text, d_text, max_length) for text in texts}
    return TextEmbeddingCache(entries, source="fallback")
