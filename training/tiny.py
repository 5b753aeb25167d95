"""A tiny Llama-architecture model and tokenizer built locally, for smoke tests and dry runs.

Nothing is downloaded: the tokenizer is a byte-level BPE trained in memory on a few sentences (plus the
task's markup), given a small ChatML-style chat template, and the model is a randomly initialised
``LlamaForCausalLM`` of a few hundred thousand parameters.  ``build_tiny_model_dir(path)`` writes both
as a normal HF folder so every code path (``from_pretrained``, trl trainers, peft, merge) is exercised
exactly as with a real checkpoint.  Select it in configs with ``model.name_or_path: tiny``.
"""

from __future__ import annotations

from pathlib import Path

TINY_MODEL_NAME = "tiny"

# ChatML-style template (the format SmolLM2 and Qwen use), with a system message optional.
TINY_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

_CORPUS = [
    "<think>[1] Clinical scenario: patients with cancer. [2] Candidate drugs: cisplatin, gemcitabine.",
    "[3] Combination reasoning: the combination improved survival. [4] Summary: one positive set.</think>",
    '<answer>[{"type": "POS", "ent_set": ["cisplatin", "gemcitabine"]}]</answer>',
    '<answer>[{"type": "NO_COMB", "ent_set": []}]</answer> COMB NEG POS',
    "Sentence: Paclitaxel plus carboplatin was well tolerated in patients with ovarian cancer.",
    "Abstract: We studied the efficacy of docetaxel and doxorubicin combined with cyclophosphamide.",
    "Extract every drug combination from the sentence and answer in JSON.",
]


def build_tiny_tokenizer(vocab_size: int = 400):
    """A byte-level BPE tokenizer with pad/eos and a chat template (fast: trains in milliseconds)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<pad>"]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_CORPUS, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<|im_start|>",
        eos_token="<|im_end|>",
        unk_token="<|endoftext|>",
        pad_token="<pad>",
    )
    fast.chat_template = TINY_CHAT_TEMPLATE
    return fast


def build_tiny_model(tokenizer, *, hidden_size: int = 32, layers: int = 2, seed: int = 0):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=hidden_size * 2,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=4096,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
    )
    model = LlamaForCausalLM(config)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model


def build_tiny_model_dir(path: str | Path, *, seed: int = 0) -> Path:
    """Write a tiny tokenizer + model as an HF folder at ``path`` (idempotent) and return it."""
    path = Path(path)
    if (path / "config.json").is_file() and (path / "tokenizer.json").is_file():
        return path
    path.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tiny_tokenizer()
    model = build_tiny_model(tokenizer, seed=seed)
    tokenizer.save_pretrained(path)
    model.save_pretrained(path)
    return path
