"""Write a tiny random-weight Llama model directory that vLLM can serve on a CPU.

Run with the vLLM venv's python (it has torch, transformers and tokenizers; the project's
own venv must never get torch):

    .venv-vllm/bin/python tests/support/tiny_llama.py OUT_DIR [--seed 0]

The text it produces is gibberish; the point is the real serving protocol. Two choices keep
the tests deterministic in what they can assert:

* Hidden size 128 with 4 heads: vLLM's CPU attention needs a head size of at least 32.
* The model can never emit the end-of-sequence token, a special token or a non-ASCII byte,
  under any sampling: hidden dimension 0 carries a constant through the residual stream
  and the output head gives those tokens a large negative weight on it (a logit bias
  baked into the weights). So generation always runs to ``max_tokens`` unless a stop
  string ends it, and every token decodes to text on its own.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

HIDDEN_SIZE = 128
NUM_HEADS = 4
NUM_LAYERS = 2
INTERMEDIATE_SIZE = 256
MAX_POSITIONS = 512
TARGET_VOCAB = 1024

BOS, EOS, PAD = "<s>", "</s>", "<pad>"
ROLE_TOKENS = ["<|system|>", "<|user|>", "<|assistant|>", "<|end|>"]
SPECIAL_TOKENS = [BOS, EOS, PAD, *ROLE_TOKENS]

CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{{ '<|' + message['role'] + '|>\n' + message['content'] + '<|end|>\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% endif %}"
)

# A constant on this residual dimension acts as a per-token logit bias in the output head.
BIAS_DIM = 0
BIAS_INPUT = 0.05
BANNED_WEIGHT = -200.0

CORPUS = """
A prompt cascade sends every request to a small language model first. A learned router reads
the prompt and the first tokens of the answer, and decides whether the small tier is good
enough or whether the request should go to the large tier. Most questions are simple, so most
of the traffic never touches the expensive model, and the bill drops without hurting quality.

The weather this morning was cold and bright. We walked along the river to the old bridge,
watched the boats drift past the market, and bought warm bread from the baker on the corner.
In the afternoon the clouds came in from the west, and by evening it was raining steadily.

To make a simple tomato soup, soften an onion in olive oil, add two cloves of garlic, a tin of
tomatoes and a cup of stock. Let it simmer for twenty minutes, then blend it until smooth.
Season with salt, pepper and a little sugar, and serve it with a spoon of cream on top.

Python is a programming language that lets you work quickly and integrate systems effectively.
Functions, classes and modules help organise a program; tests check that it behaves as
expected. A good test is small, fast and deterministic, and it fails with a clear message.

The history of the city goes back more than two thousand years. Merchants came by sea and by
road, and the harbour grew into one of the busiest ports in the region. Today the old walls are
a park, and the castle on the hill is a museum that tells the story of the people who lived here.

What is the capital of France? Paris is the capital and the largest city of France.
How many legs does a spider have? A spider has eight legs. Why is the sky blue? Sunlight is
scattered by the air, and blue light is scattered more than red light, so the sky looks blue.
Please summarise the following text in one sentence. Translate this paragraph into German.
Write a short poem about the sea, the wind and the light on the water at the end of the day.
Explain the difference between a list and a tuple. Give three reasons to learn a new language.
Numbers: zero one two three four five six seven eight nine ten 0 1 2 3 4 5 6 7 8 9 10 100 2024.

The orchestra tuned their instruments while the audience found their seats. When the conductor
raised her baton, the hall fell silent, and the violins began a slow, quiet melody that grew,
phrase by phrase, into a storm of brass and drums before it faded back into a single flute.

Gardening teaches patience. Seeds sown in spring need water, sunlight and good soil; weeds must
be pulled by hand, and slugs kept away from the lettuce. By late summer the beans climb their
poles, the apples turn red, and there are more courgettes than anyone could possibly eat.

Researchers measured the temperature of the lake every hour for three years. They found that
the surface warmed faster than the deep water, that ice formed later each winter, and that the
fish moved north. Their report recommends protecting the wetlands that feed the lake.

Dear customer, thank you for your order. Your package has been shipped and should arrive within
five working days. If anything is missing or damaged, reply to this message with your order
number and a photograph, and our support team will arrange a replacement or a full refund.
"""


def train_tokenizer(vocab_size: int) -> Tokenizer:
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    lines = [line for line in CORPUS.splitlines() if line.strip()]
    tokenizer.train_from_iterator(lines * 4, trainer=trainer)
    return tokenizer


def banned_token_ids(tokenizer: PreTrainedTokenizerFast) -> list[int]:
    """Special tokens and tokens that do not decode to printable ASCII on their own."""
    special = set(tokenizer.all_special_ids)
    return [
        token_id
        for token_id in range(len(tokenizer))
        if token_id in special or not _is_printable_ascii(tokenizer.decode([token_id]))
    ]


def _is_printable_ascii(text: str) -> bool:
    return bool(text) and all(32 <= ord(ch) < 127 or ch == "\n" for ch in text)


def build_tokenizer() -> PreTrainedTokenizerFast:
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=train_tokenizer(TARGET_VOCAB),
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        additional_special_tokens=ROLE_TOKENS,
        model_max_length=MAX_POSITIONS,
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def build_model(tokenizer: PreTrainedTokenizerFast, seed: int) -> LlamaForCausalLM:
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=HIDDEN_SIZE,
        intermediate_size=INTERMEDIATE_SIZE,
        num_hidden_layers=NUM_LAYERS,
        num_attention_heads=NUM_HEADS,
        num_key_value_heads=NUM_HEADS,
        max_position_embeddings=MAX_POSITIONS,
        rms_norm_eps=1e-5,
        tie_word_embeddings=False,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        torch_dtype="float32",
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    bake_logit_bias(model, banned_token_ids(tokenizer))
    return model.eval()


@torch.no_grad()
def bake_logit_bias(model: LlamaForCausalLM, banned: list[int]) -> None:
    """Keep BIAS_DIM constant through the residual stream and use it to ban tokens."""
    model.model.embed_tokens.weight[:, BIAS_DIM] = BIAS_INPUT
    for layer in model.model.layers:
        layer.self_attn.o_proj.weight[BIAS_DIM, :] = 0.0
        layer.mlp.down_proj.weight[BIAS_DIM, :] = 0.0
    lm_head = model.lm_head.weight
    lm_head[:, BIAS_DIM] = 0.0
    lm_head[banned, BIAS_DIM] = BANNED_WEIGHT


def write_model_dir(out_dir: Path, *, seed: int) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer()
    model = build_model(tokenizer, seed)
    model.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)
    # Older and newer transformers disagree on where the template lives; write both places.
    config_path = out_dir / "tokenizer_config.json"
    tokenizer_config = json.loads(config_path.read_text())
    tokenizer_config["chat_template"] = CHAT_TEMPLATE
    config_path.write_text(json.dumps(tokenizer_config, indent=2))
    generation_config = {
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
        "max_length": MAX_POSITIONS,
    }
    (out_dir / "generation_config.json").write_text(json.dumps(generation_config, indent=2))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", type=Path, help="directory to write the model into")
    parser.add_argument("--seed", type=int, default=0, help="seed for the random weights")
    args = parser.parse_args()
    write_model_dir(args.out_dir, seed=args.seed)
    print(f"tiny llama written to {args.out_dir}")


if __name__ == "__main__":
    main()
