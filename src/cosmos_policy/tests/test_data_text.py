import logging

import pytest
import torch

from cosmos_policy.data.text import TextEmbeddingCache, build_text_cache, fallback_embedding


def test_fallback_is_deterministic_distinct_and_logged(caplog):
    a1, m1 = fallback_embedding("fold the shirt", 16, 32)
    a2, _ = fallback_embedding("fold the shirt", 16, 32)
    b, _ = fallback_embedding("put candy in bag", 16, 32)
    assert torch.equal(a1, a2) and not torch.equal(a1, b)
    assert m1.sum() == 4 and torch.all(a1[~m1] == 0)
    with caplog.at_level(logging.WARNING):
        cache = build_text_cache(["x"], d_text=8, max_length=16)
    assert "NOT T5" in caplog.text and cache.source == "fallback"


def test_cache_round_trip_keeps_texts(tmp_path):
    cache = build_text_cache(["fold the shirt", "put candy in bag"], d_text=8, max_length=16)
    path = cache.save(tmp_path / "text_embeddings.safetensors")
    loaded = TextEmbeddingCache.load(path)
    assert sorted(loaded.texts) == ["fold the shirt", "put candy in bag"]
    for text in cache.texts:
        for a, b in zip(cache.get(text), loaded.get(text)):
            assert torch.equal(a, b)
    with pytest.raises(KeyError, match="embed-text"):
        loaded.get("unknown task")


def test_local_t5_encoder_directory(tmp_path):
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from tokenizers.pre_tokenizers import Whitespace
    from transformers import PreTrainedTokenizerFast, T5Config, T5EncoderModel

    vocab = {"<pad>": 0, "</s>": 1, "<unk>": 2, "fold": 3, "the": 4, "shirt": 5}
    tok = Tokenizer(WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = Whitespace()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>")
    torch.manual_seed(0)
    config = T5Config(vocab_size=8, d_model=12, d_kv=4, num_heads=2, d_ff=16, num_layers=1)
    encoder = T5EncoderModel(config).eval()
    encoder.save_pretrained(tmp_path / "t5")
    fast.save_pretrained(tmp_path / "t5")

    cache = build_text_cache(["fold the shirt"], d_text=12, t5_dir=tmp_path / "t5", max_length=8)
    emb, mask = cache.get("fold the shirt")
    assert emb.shape == (8, 12) and mask.sum() == 3 and cache.source.startswith("t5:")
    with torch.no_grad():
        ref = encoder(input_ids=torch.tensor([[3, 4, 5]])).last_hidden_state[0]
    torch.testing.assert_close(emb[:3], ref, atol=1e-5, rtol=1e-5)
    assert torch.all(emb[3:] == 0)
    with pytest.raises(ValueError, match="d_model is 12"):
        build_text_cache(["fold the shirt"], d_text=16, t5_dir=tmp_path / "t5", max_length=8)
