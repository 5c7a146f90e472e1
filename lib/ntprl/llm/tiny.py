"""A tiny random Llama and a character tokenizer, built in code: the offline stand-in for a
pre-trained Llama. It runs the whole SFT -> GRPO path on a CPU in seconds (its numbers mean
nothing: it has never read any text) and needs no download."""

from __future__ import annotations

import string

SPECIALS = ("<pad>", "<s>", "</s>", "<unk>")
CHARS = string.ascii_letters + string.digits + string.punctuation + " \n"


def char_tokenizer():
    """A ``PreTrainedTokenizerFast`` with one token per printable ASCII character plus
    ``<pad> <s> </s> <unk>``; it adds ``<s>`` in front of each text, like Llama's."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {t: i for i, t in enumerate(SPECIALS + tuple(CHARS))}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split("", behavior="isolated")
    tok.decoder = decoders.Fuse()
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A <s> $B",
                                                       special_tokens=[("<s>", vocab["<s>"])])
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", bos_token="<s>",
                                        eos_token="</s>", unk_token="<unk>")
    tokenizer.padding_side = "left"  # generation pads prompts on the left
    return tokenizer


def tiny_llama(tokenizer, hidden_size: int = 64, layers: int = 2, seed: int = 0):
    """A randomly initialised ``LlamaForCausalLM`` (about 0.1M parameters) for ``tokenizer``."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=hidden_size,
                         intermediate_size=2 * hidden_size, num_hidden_layers=layers,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=True)
    return LlamaForCausalLM(config)
