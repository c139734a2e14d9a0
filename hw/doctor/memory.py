"""Activation memory of one training step, from a model's config.json, the batch size and the sequence length.

Per layer and position a transformer keeps about 16 × d_model values for the backward pass (Korthikanti et al.
2022, "Reducing Activation Recomputation in Large Transformer Models", 34 bytes in 16 bits = 17 values, less
the dropout masks; no attention-score term: PyTorch's fused attention (SDPA), which transformers uses, stores
none). A decoder's cross-attention keeps 3 more values per source position and layer (its keys, values and
LoRA input), and a generative model the float32 log-probabilities of every position. Measured with
`saved_tensors_hooks` on whisper-base (LoRA r 4 on q/v, fp32, 40 label tokens): 0.344 GB per example, estimated
0.366 GB; trained in full 0.392 GB (tests/test_doctor.py repeats the measurement on a tiny Whisper).
"""

from dataclasses import dataclass

VALUES_PER_LAYER = 16
"""Values kept per position and layer, in units of d_model."""
CROSS_VALUES = 3
"""Values kept per source position and decoder layer by cross-attention, in units of d_model."""
LOGIT_BYTES = 4  # the loss upcasts logits to float32 whatever the training precision


@dataclass(frozen=True)
class Architecture:
    """What activations scale with, read from a config.json."""

    width: int
    """d_model (`d_model`, `hidden_size` or `dim`)."""
    stacks: tuple[tuple[int, int], ...]
    """(layers, positions) of each stack: the encoder's and decoder's, or the one stack of a text model."""
    cross: tuple[int, int] | None
    """(decoder layers, source positions) of an encoder-decoder's cross-attention, else None."""
    vocabulary: int
    """Logits per output position of a generative model; 0 for a classifier or extractive QA head."""


def architecture(config: dict, tokens: int | None) -> Architecture | None:
    """The architecture of a config.json, or None when it lacks the keys this arithmetic needs.

    Args:
        config: the model's config.json.
        tokens: the text's sequence length set by the homework (a `Tokens` field); None uses the model's own
            maximum. A speech encoder always sees its full window (`max_source_positions`: Whisper pads to 30 s).
    """
    width = config.get("d_model") or config.get("hidden_size") or config.get("dim")
    if not width:
        return None
    generative = any(name.endswith("CausalLM") for name in config.get("architectures") or [])
    if config.get("is_encoder_decoder") and "encoder_layers" in config:
        source = config.get("max_source_positions") or tokens or config.get("max_position_embeddings")
        target = tokens or config.get("max_target_positions") or config.get("max_position_embeddings")
        if not (source and target):
            return None
        decoder = config.get("decoder_layers", config["encoder_layers"])
        stacks = ((config["encoder_layers"], source), (decoder, target))
        return Architecture(width, stacks, (decoder, source), config.get("vocab_size", 0))
    layers = config.get("num_hidden_layers") or config.get("n_layers") or config.get("num_layers")
    positions = tokens or config.get("max_position_embeddings")
    if not (layers and positions):
        return None
    return Architecture(width, ((layers, positions),), None, config.get("vocab_size", 0) if generative else 0)


def activation_bytes(model: Architecture, batch: int, value_bytes: int, checkpointing: bool) -> float:
    """Bytes kept for the backward pass of one training step.

    Args:
        model: what `architecture` read.
        batch: examples per device and step (`train.per_device_train_batch_size`).
        value_bytes: 4 in fp32, 2 in fp16/bf16.
        checkpointing: activation checkpointing (on for k-bit LoRA): each layer keeps only its input, and one
            layer at a time is recomputed in full during the backward pass.
    """
    cross_layers, source = model.cross or (0, 0)
    if checkpointing:
        values = sum(layers * positions for layers, positions in model.stacks)
        values += max(positions for _, positions in model.stacks) * VALUES_PER_LAYER + source * CROSS_VALUES
    else:
        values = sum(layers * positions for layers, positions in model.stacks) * VALUES_PER_LAYER
        values += cross_layers * source * CROSS_VALUES
    logits = model.stacks[-1][1] * model.vocabulary * LOGIT_BYTES
    return batch * (values * model.width * value_bytes + logits)
