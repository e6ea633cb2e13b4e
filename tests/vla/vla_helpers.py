"""A tiny checkpoint in OpenVLA's published on-disk layout, written from an independent spec of that layout.

Field names, parameter names, file names and the tokenizer's structure are those of `openvla/openvla-7b`
(remote-code `OpenVLAForActionPrediction`, timm ViTs); every dimension is scaled down: 56-px images and
14-px patches (16 patches per tower), towers of width 32 with 2 blocks and 16 heads, a 2-layer Llama of
width 64, a 512-token base vocabulary (+ `<PAD>` = 512, embeddings padded to 576). Nothing here uses the
loader's own name mapping.
"""

from __future__ import annotations

import json
import random
import string
from pathlib import Path

import torch
from safetensors.torch import save_file
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

IMAGE_SIZE, PATCH = 56, 14
DINO, SIGLIP, SIGLIP_MLP, DEPTH = 32, 32, 119, 2  # SigLIP's MLP ratio 3.7362, as so400m
LLM, LLM_MLP, LLM_LAYERS, LLM_HEADS = 64, 128, 2, 4
BASE_VOCAB, PAD_TO = 512, 64
ROWS = BASE_VOCAB + PAD_TO  # 513 tokens padded to a multiple of 64
NORM_STATS = {
    "metaworld": {
        "action": {"q01": [-0.5, -1.0, 0.0, -1.0], "q99": [0.5, 1.0, 2.0, 1.0], "mask": [True, True, True, False],
                   "mean": [0.0] * 4, "std": [1.0] * 4, "min": [-1.0] * 4, "max": [2.0] * 4},
        "num_trajectories": 10, "num_transitions": 1000,
    },
    "bridge_orig": {
        "action": {"q01": [-0.03] * 6 + [0.0], "q99": [0.03] * 6 + [1.0], "mask": [True] * 6 + [False]},
    },
}  # fmt: skip
DINO_MEAN, DINO_STD = [0.484375, 0.455078125, 0.40625], [0.228515625, 0.2236328125, 0.224609375]


def published_shapes() -> dict[str, tuple[int, ...]]:
    """Every tensor of the published layout (timm names for the towers) with its scaled-down shape."""
    n = (IMAGE_SIZE // PATCH) ** 2
    shapes: dict[str, tuple[int, ...]] = {}

    def tower(prefix: str, width: int, mlp: int, layer_scale: bool) -> None:
        shapes[f"{prefix}pos_embed"] = (1, n, width)
        shapes[f"{prefix}patch_embed.proj.weight"] = (width, 3, PATCH, PATCH)
        shapes[f"{prefix}patch_embed.proj.bias"] = (width,)
        for i in range(DEPTH):
            b = f"{prefix}blocks.{i}."
            for norm in ("norm1", "norm2"):
                shapes[f"{b}{norm}.weight"] = shapes[f"{b}{norm}.bias"] = (width,)
            shapes[f"{b}attn.qkv.weight"], shapes[f"{b}attn.qkv.bias"] = (3 * width, width), (3 * width,)
            shapes[f"{b}attn.proj.weight"], shapes[f"{b}attn.proj.bias"] = (width, width), (width,)
            shapes[f"{b}mlp.fc1.weight"], shapes[f"{b}mlp.fc1.bias"] = (mlp, width), (mlp,)
            shapes[f"{b}mlp.fc2.weight"], shapes[f"{b}mlp.fc2.bias"] = (width, mlp), (width,)
            if layer_scale:  # the remote code renames timm's LayerScale.gamma to scale_factor
                shapes[f"{b}ls1.scale_factor"] = shapes[f"{b}ls2.scale_factor"] = (width,)
        shapes[f"{prefix}norm.weight"] = shapes[f"{prefix}norm.bias"] = (width,)

    dino = "vision_backbone.featurizer."
    shapes[f"{dino}cls_token"], shapes[f"{dino}reg_token"] = (1, 1, DINO), (1, 4, DINO)
    tower(dino, DINO, 4 * DINO, layer_scale=True)
    siglip = "vision_backbone.fused_featurizer."
    tower(siglip, SIGLIP, SIGLIP_MLP, layer_scale=False)
    pool = f"{siglip}attn_pool."  # timm's MAP head: in the checkpoint, never used by OpenVLA
    shapes[f"{pool}latent"] = (1, 1, SIGLIP)
    for name, out in (("q", SIGLIP), ("kv", 2 * SIGLIP), ("proj", SIGLIP)):
        shapes[f"{pool}{name}.weight"], shapes[f"{pool}{name}.bias"] = (out, SIGLIP), (out,)
    shapes[f"{pool}norm.weight"] = shapes[f"{pool}norm.bias"] = (SIGLIP,)
    shapes[f"{pool}mlp.fc1.weight"], shapes[f"{pool}mlp.fc1.bias"] = (SIGLIP_MLP, SIGLIP), (SIGLIP_MLP,)
    shapes[f"{pool}mlp.fc2.weight"], shapes[f"{pool}mlp.fc2.bias"] = (SIGLIP, SIGLIP_MLP), (SIGLIP,)
    vision = DINO + SIGLIP
    for name, (out, inp) in {"fc1": (4 * vision, vision), "fc2": (LLM, 4 * vision), "fc3": (LLM, LLM)}.items():
        shapes[f"projector.{name}.weight"], shapes[f"projector.{name}.bias"] = (out, inp), (out,)
    lm = "language_model."
    shapes[f"{lm}model.embed_tokens.weight"] = shapes[f"{lm}lm_head.weight"] = (ROWS, LLM)
    for i in range(LLM_LAYERS):
        b = f"{lm}model.layers.{i}."
        for proj in ("q_proj", "k_proj", "v_proj", "o_proj"):
            shapes[f"{b}self_attn.{proj}.weight"] = (LLM, LLM)
        shapes[f"{b}mlp.gate_proj.weight"] = shapes[f"{b}mlp.up_proj.weight"] = (LLM_MLP, LLM)
        shapes[f"{b}mlp.down_proj.weight"] = (LLM, LLM_MLP)
        shapes[f"{b}input_layernorm.weight"] = shapes[f"{b}post_attention_layernorm.weight"] = (LLM,)
    shapes[f"{lm}model.norm.weight"] = (LLM,)
    return shapes


def published_tensors(seed: int = 0) -> dict[str, torch.Tensor]:
    """Random values for `published_shapes`: norms and layer scales near their typical values, weights small."""
    generator = torch.Generator().manual_seed(seed)
    tensors = {}
    for name, shape in published_shapes().items():
        noise = torch.randn(shape, generator=generator)
        if name.endswith("scale_factor"):
            value = 0.5 + 0.1 * noise
        elif "norm" in name and name.endswith("weight"):
            value = 1.0 + 0.1 * noise
        elif name.endswith(("pos_embed", "cls_token", "reg_token", "latent")):
            value = 0.5 * noise
        else:
            value = (0.02 if name.endswith("bias") else 0.3 / shape[-1] ** 0.5 * 5) * noise
        tensors[name] = value.to(torch.bfloat16)  # OpenVLA-7B ships bf16
    return tensors


def llama_like_tokenizer() -> PreTrainedTokenizerFast:
    """A sentencepiece-style BPE (`▁` marks spaces, `<s>`=1, `</s>`=2) with 512 ids, then `<PAD>` = 512."""
    rng = random.Random(0)
    instructions = ["reach the goal", "push the puck to the goal", "pick up the remote", "open the drawer"]
    texts = [f"In: What action should the robot take to {i}?\nOut:" for i in instructions] * 50
    texts += [" ".join("".join(rng.choice(string.ascii_lowercase) for _ in range(rng.randint(2, 7)))
                       for _ in range(8)) for _ in range(2000)]  # fmt: skip
    tokenizer = Tokenizer(models.BPE(unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first")
    tokenizer.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="first")
    alphabet = sorted(set("".join(texts).replace(" ", "")) | {"▁"})
    trainer = trainers.BpeTrainer(vocab_size=BASE_VOCAB, special_tokens=["<unk>", "<s>", "</s>"],
                                  initial_alphabet=alphabet, show_progress=False)  # fmt: skip
    tokenizer.train_from_iterator(texts, trainer)
    if tokenizer.get_vocab_size() != BASE_VOCAB:
        raise RuntimeError(f"the BPE vocabulary has {tokenizer.get_vocab_size()} tokens, not {BASE_VOCAB}")
    tokenizer.add_special_tokens(["<PAD>"])
    tokenizer.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, bos_token="<s>", eos_token="</s>", unk_token="<unk>",
                                   pad_token="<PAD>")  # fmt: skip


def published_config() -> dict:
    """`config.json` as OpenVLA writes it (OpenVLA-7B's fields and values; scaled-down sizes)."""
    return {
        "arch_specifier": "no-align+fused-gelu-mlp",
        "architectures": ["OpenVLAForActionPrediction"],
        "auto_map": {"AutoConfig": "configuration_prismatic.OpenVLAConfig",
                     "AutoModelForVision2Seq": "modeling_prismatic.OpenVLAForActionPrediction"},
        "hf_llm_id": "meta-llama/Llama-2-7b-hf",
        "image_resize_strategy": "resize-naive",
        "image_sizes": [IMAGE_SIZE, IMAGE_SIZE],
        "llm_backbone_id": "llama2-7b-pure",
        "llm_max_length": 2048,
        "model_type": "openvla",
        "n_action_bins": 256,
        "norm_stats": NORM_STATS,
        "output_projector_states": False,
        "pad_to_multiple_of": PAD_TO,
        "pad_token_id": BASE_VOCAB,
        "text_config": {"model_type": "llama", "pad_token_id": BASE_VOCAB, "torch_dtype": "bfloat16",
                        "vocab_size": ROWS, "hidden_size": LLM, "intermediate_size": LLM_MLP,
                        "num_hidden_layers": LLM_LAYERS, "num_attention_heads": LLM_HEADS,
                        "max_position_embeddings": 256},
        "timm_model_ids": ["vit_large_patch14_reg4_dinov2.lvd142m", "vit_so400m_patch14_siglip_224"],
        "timm_override_act_layers": [None, None],
        "torch_dtype": "bfloat16",
        "transformers_version": "4.40.1",
        "use_fused_vision_backbone": True,
        "vision_backbone_id": "dinosiglip-vit-so-224px",
    }  # fmt: skip


def preprocessor_config() -> dict:
    """`preprocessor_config.json` as OpenVLA writes it (two towers, channel-stacked)."""
    sizes = [[3, IMAGE_SIZE, IMAGE_SIZE]] * 2
    return {
        "auto_map": {"AutoImageProcessor": "processing_prismatic.PrismaticImageProcessor",
                     "AutoProcessor": "processing_prismatic.PrismaticProcessor"},
        "image_processor_type": "PrismaticImageProcessor",
        "image_resize_strategy": "resize-naive",
        "input_sizes": sizes,
        "interpolations": ["bicubic", "bicubic"],
        "means": [[0.485, 0.456, 0.406], [0.5, 0.5, 0.5]],
        "stds": [[0.229, 0.224, 0.225], [0.5, 0.5, 0.5]],
        "processor_class": "PrismaticProcessor",
        "tvf_crop_params": [{"output_size": [IMAGE_SIZE, IMAGE_SIZE]}] * 2,
        "tvf_do_letterbox": False,
        "tvf_letterbox_fill": None,
        "tvf_normalize_params": [{"inplace": False, "mean": DINO_MEAN, "std": DINO_STD},
                                 {"inplace": False, "mean": [0.5] * 3, "std": [0.5] * 3}],
        "tvf_resize_params": [{"antialias": True, "interpolation": 3, "max_size": None,
                               "size": [IMAGE_SIZE, IMAGE_SIZE]}] * 2,
        "use_fused_vision_backbone": True,
    }  # fmt: skip


def write_published_checkpoint(path: str | Path, seed: int = 0) -> str:
    """Write config, two safetensors shards + index, preprocessor config and tokenizer; returns the path."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    tensors = published_tensors(seed)
    vision = {k: v for k, v in tensors.items() if k.startswith("vision")}
    shards = {"model-00001-of-00002.safetensors": vision,
              "model-00002-of-00002.safetensors": {k: v for k, v in tensors.items() if k not in vision}}  # fmt: skip
    weight_map = {}
    for file, shard in shards.items():
        save_file(shard, path / file, metadata={"format": "pt"})
        weight_map.update(dict.fromkeys(shard, file))
    total = sum(t.numel() * t.element_size() for t in tensors.values())
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    (path / "model.safetensors.index.json").write_text(json.dumps(index, indent=2))
    (path / "config.json").write_text(json.dumps(published_config(), indent=2))
    (path / "preprocessor_config.json").write_text(json.dumps(preprocessor_config(), indent=2))
    llama_like_tokenizer().save_pretrained(path)
    config = json.loads((path / "tokenizer_config.json").read_text())
    (path / "tokenizer_config.json").write_text(json.dumps({**config, "tokenizer_class": "LlamaTokenizer"}))
    return str(path)
