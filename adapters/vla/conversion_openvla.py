"""OpenVLA's published checkpoint format ↔ transformers names: the weight-name mapping and the checkpoint files.

A published OpenVLA checkpoint (e.g. `openvla/openvla-7b`) is a folder with

- `config.json` as OpenVLA writes it: `model_type: "openvla"`, `vision_backbone_id`,
  `llm_backbone_id`, `arch_specifier`, `use_fused_vision_backbone`, `image_sizes`,
  `timm_model_ids`, `timm_override_act_layers`, `hf_llm_id`, `pad_token_id`,
  `pad_to_multiple_of`, `text_config` (a Llama config, often only the fields that differ from
  the defaults), `norm_stats` per dataset, `n_action_bins` and an `auto_map` to the
  `trust_remote_code` classes;
- safetensors weights, one file or shards with `model.safetensors.index.json`, whose names are
  those of the remote-code model: timm ViTs under `vision_backbone.featurizer.*` (DINOv2 with 4
  registers) and `vision_backbone.fused_featurizer.*` (SigLIP), the projector
  `projector.fc1`..`fc3` and the Llama LM `language_model.*`;
- `preprocessor_config.json` (two image normalisations, channel-stacked), the Llama tokenizer
  (`<PAD>` added as id 32000, embeddings padded to a multiple of 64) and optionally
  `dataset_statistics.json`.

`published_to_transformers` maps the published weights to the names of `OpenVLAForActionPrediction`'s
transformers modules (renames, plus: timm's fused `qkv` is split into q/k/v; timm's DINOv2
position table has no class-token row, so a zero row is prepended — timm folded that row into
`cls_token`; the remote code renamed LayerScale's `gamma` to `scale_factor`). SigLIP's
attention-pool head is never used by OpenVLA (features come from the second-to-last block); its
tensors are carried verbatim so that `save_pretrained` writes the published layout back complete
(`transformers_to_published`).

The checkpoint files: `read_config` reads `config.json` (+ `dataset_statistics.json`), the weight
files are listed from the index (or the single file) and their tensor shapes read from the
safetensors headers without loading the tensors, and `save_published_weights` writes one file or
shards with an index. Loading a checkpoint into the model is `load_openvla`
(`gipo_plugins.vla.modeling_openvla`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Sequence
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import Tensor

from gipo_plugins.vla.configuration_openvla import OpenVLAConfig, _tower_spec

WEIGHTS_INDEX = "model.safetensors.index.json"
WEIGHTS_FILE = "model.safetensors"
STATISTICS_FILE = "dataset_statistics.json"


# --------------------------------------------------------------------------------------------------
# Published names ↔ transformers names
# --------------------------------------------------------------------------------------------------

_DINO = "vision_backbone.featurizer."
_SIGLIP = "vision_backbone.fused_featurizer."
_PASSTHROUGH = re.compile(r"vision_backbone\.(featurizer|fused_featurizer)\.attn_pool\..+")


def _tower_prefixes(config: OpenVLAConfig) -> dict[str, str]:
    """Published prefix → family of each tower."""
    families = [_tower_spec(i).family for i in config.timm_model_ids]
    return dict(zip([_DINO, _SIGLIP][: len(families)], families, strict=True))


def _block_names(family: str) -> dict[str, str]:
    """timm block sub-module → transformers layer sub-module (q/k/v come from `attn.qkv`)."""
    if family == "dinov2":
        return {"norm1": "norm1", "norm2": "norm2", "mlp.fc1": "mlp.fc1", "mlp.fc2": "mlp.fc2",
                "attn.proj": "attention.o_proj", "ls1.scale_factor": "layer_scale1.lambda1",
                "ls1.gamma": "layer_scale1.lambda1", "ls2.scale_factor": "layer_scale2.lambda1",
                "ls2.gamma": "layer_scale2.lambda1"}  # fmt: skip
    return {"norm1": "layer_norm1", "norm2": "layer_norm2", "mlp.fc1": "mlp.fc1", "mlp.fc2": "mlp.fc2",
            "attn.proj": "self_attn.out_proj"}  # fmt: skip


def _qkv_names(family: str) -> tuple[str, str, str]:
    return ("attention.q_proj", "attention.k_proj", "attention.v_proj") if family == "dinov2" else (
        "self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj")  # fmt: skip


def _layers(family: str) -> str:
    return "encoder.layer" if family == "dinov2" else "encoder.layers"


def _tower_tensor_to_transformers(prefix: str, family: str, name: str, tensor: Tensor) -> Iterator[tuple[str, Tensor]]:
    """One published tensor of a tower (name without prefix) → transformers names and tensors."""
    block = re.fullmatch(r"blocks\.(\d+)\.(.+)\.(weight|bias|scale_factor|gamma)", name)
    if block:
        index, module, kind = block.groups()
        layer = f"{prefix}{_layers(family)}.{index}."
        if module == "attn.qkv":
            for part, target in zip(tensor.chunk(3, dim=0), _qkv_names(family), strict=True):
                yield f"{layer}{target}.{kind}", part
            return
        key = module if kind in ("weight", "bias") else f"{module}.{kind}"
        target = _block_names(family).get(key)
        if target is not None:
            yield f"{layer}{target}" + (f".{kind}" if kind in ("weight", "bias") else ""), tensor
            return
    elif family == "dinov2":
        simple = {"cls_token": "embeddings.cls_token", "reg_token": "embeddings.register_tokens",
                  "patch_embed.proj.weight": "embeddings.patch_embeddings.projection.weight",
                  "patch_embed.proj.bias": "embeddings.patch_embeddings.projection.bias",
                  "norm.weight": "layernorm.weight", "norm.bias": "layernorm.bias"}  # fmt: skip
        if name == "pos_embed":  # timm: patches only (the class-token row was folded into cls_token)
            cls_row = tensor.new_zeros(1, 1, tensor.shape[-1])
            yield f"{prefix}embeddings.position_embeddings", torch.cat([cls_row, tensor], 1)
            return
        if name in simple:
            yield prefix + simple[name], tensor
            return
    else:
        simple = {"patch_embed.proj.weight": "embeddings.patch_embedding.weight",
                  "patch_embed.proj.bias": "embeddings.patch_embedding.bias",
                  "norm.weight": "post_layernorm.weight", "norm.bias": "post_layernorm.bias"}  # fmt: skip
        if name == "pos_embed":
            yield f"{prefix}embeddings.position_embedding.weight", tensor[0]
            return
        if name in simple:
            yield prefix + simple[name], tensor
            return
    raise ValueError(f"unexpected tensor {prefix}{name} in an OpenVLA checkpoint ({family} tower)")


def published_to_transformers(
    tensors: Iterator[tuple[str, Tensor]] | Sequence[tuple[str, Tensor]], config: OpenVLAConfig
) -> Iterator[tuple[str, Tensor]]:
    """Map `(published name, tensor)` pairs to this module's names (one tensor may become three).

    Raises:
        ValueError: a name that does not belong to OpenVLA's layout.
    """
    prefixes = _tower_prefixes(config)
    for name, tensor in tensors:
        if _PASSTHROUGH.fullmatch(name):
            yield "passthrough." + name.replace(".", "__"), tensor
        elif name.startswith(("projector.", "language_model.")):
            yield name, tensor
        else:
            prefix = next((p for p in prefixes if name.startswith(p)), None)
            if prefix is None:
                raise ValueError(f"unexpected tensor {name} in an OpenVLA checkpoint")
            yield from _tower_tensor_to_transformers(prefix, prefixes[prefix], name.removeprefix(prefix), tensor)


def transformers_to_published(state: dict[str, Tensor], config: OpenVLAConfig) -> dict[str, Tensor]:
    """Inverse of `published_to_transformers` for a whole state dict.

    DINOv2's class-token position row is folded back into `cls_token` (the forward pass is
    unchanged); the DINOv2 mask token, unused by OpenVLA, is dropped.
    """
    out: dict[str, Tensor] = {}
    for name, tensor in state.items():
        if name.startswith("passthrough."):
            out[name.removeprefix("passthrough.").replace("__", ".")] = tensor
        elif name.startswith(("projector.", "language_model.")):
            out[name] = tensor
    for prefix, family in _tower_prefixes(config).items():
        tower = {k.removeprefix(prefix): v for k, v in state.items() if k.startswith(prefix)}
        layers = _layers(family)
        depth = 1 + max(int(k.split(".")[2]) for k in tower if k.startswith(layers + "."))
        for i in range(depth):
            layer = f"{layers}.{i}."
            q, k, v = (tower[f"{layer}{n}.weight"] for n in _qkv_names(family))
            out[f"{prefix}blocks.{i}.attn.qkv.weight"] = torch.cat([q, k, v])
            q, k, v = (tower[f"{layer}{n}.bias"] for n in _qkv_names(family))
            out[f"{prefix}blocks.{i}.attn.qkv.bias"] = torch.cat([q, k, v])
            for source, target in _block_names(family).items():
                if source.endswith(".gamma"):
                    continue  # written as scale_factor, the remote code's name
                if source.endswith(".scale_factor"):
                    out[f"{prefix}blocks.{i}.{source}"] = tower[layer + target]
                    continue
                for kind in ("weight", "bias"):
                    out[f"{prefix}blocks.{i}.{source}.{kind}"] = tower[f"{layer}{target}.{kind}"]
        if family == "dinov2":
            positions = tower["embeddings.position_embeddings"]
            out[f"{prefix}cls_token"] = tower["embeddings.cls_token"] + positions[:, :1]
            out[f"{prefix}reg_token"] = tower["embeddings.register_tokens"]
            out[f"{prefix}pos_embed"] = positions[:, 1:]
            out[f"{prefix}patch_embed.proj.weight"] = tower["embeddings.patch_embeddings.projection.weight"]
            out[f"{prefix}patch_embed.proj.bias"] = tower["embeddings.patch_embeddings.projection.bias"]
            out[f"{prefix}norm.weight"], out[f"{prefix}norm.bias"] = tower["layernorm.weight"], tower["layernorm.bias"]
        else:
            out[f"{prefix}pos_embed"] = tower["embeddings.position_embedding.weight"][None]
            out[f"{prefix}patch_embed.proj.weight"] = tower["embeddings.patch_embedding.weight"]
            out[f"{prefix}patch_embed.proj.bias"] = tower["embeddings.patch_embedding.bias"]
            out[f"{prefix}norm.weight"] = tower["post_layernorm.weight"]
            out[f"{prefix}norm.bias"] = tower["post_layernorm.bias"]
    return out


# --------------------------------------------------------------------------------------------------
# Reading and writing checkpoints
# --------------------------------------------------------------------------------------------------


def _weight_files(path: Path) -> list[Path]:
    if (path / WEIGHTS_INDEX).exists():
        index = json.loads((path / WEIGHTS_INDEX).read_text())
        return [path / f for f in sorted(set(index["weight_map"].values()))]
    if (path / WEIGHTS_FILE).exists():
        return [path / WEIGHTS_FILE]
    raise ValueError(f"no {WEIGHTS_FILE} or {WEIGHTS_INDEX} in {path} (OpenVLA checkpoints are safetensors)")


def _shapes(files: Sequence[Path]) -> dict[str, tuple[int, ...]]:
    shapes = {}
    for file in files:
        with safe_open(file, framework="pt") as f:
            for key in f.keys():  # noqa: SIM118  (safe_open is not a mapping)
                shapes[key] = tuple(f.get_slice(key).get_shape())
    return shapes


def read_config(path: str | Path) -> OpenVLAConfig:
    """`config.json` (+ `dataset_statistics.json`, whose datasets win) of a published checkpoint.

    Raises:
        ValueError: no `config.json`, or `model_type` is not `"openvla"`.
    """
    path = Path(path)
    if not (path / "config.json").exists():
        raise ValueError(f"no config.json in {path}")
    raw = json.loads((path / "config.json").read_text())
    if raw.get("model_type") != "openvla":
        raise ValueError(f"config.json model_type must be 'openvla', got {raw.get('model_type')!r}")
    raw.pop("model_type")
    if (path / STATISTICS_FILE).exists():
        raw["norm_stats"] = {**(raw.get("norm_stats") or {}), **json.loads((path / STATISTICS_FILE).read_text())}
    return OpenVLAConfig(**raw)


def _with_statistics(config: OpenVLAConfig, path: Path) -> OpenVLAConfig:
    """`config` with the datasets of `path`'s `dataset_statistics.json` (if any) merged in, as `read_config` does."""
    if (path / STATISTICS_FILE).exists():
        config.norm_stats = {**(config.norm_stats or {}), **json.loads((path / STATISTICS_FILE).read_text())}
    return config


def save_published_weights(state: dict[str, Tensor], path: str | Path, *, max_shard_size: int = 5 * 2**30) -> None:
    """Write `state` (published names) as `model.safetensors`, or as shards with an index past `max_shard_size`."""
    path = Path(path)
    shards: list[dict[str, Tensor]] = [{}]
    size = 0
    for name in sorted(state):
        tensor = state[name].detach().contiguous().cpu()
        nbytes = tensor.numel() * tensor.element_size()
        if shards[-1] and size + nbytes > max_shard_size:
            shards.append({})
            size = 0
        shards[-1][name] = tensor
        size += nbytes
    if len(shards) == 1:
        save_file(shards[0], path / WEIGHTS_FILE, metadata={"format": "pt"})
        return
    names = [f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors" for i in range(len(shards))]
    weight_map = {}
    for shard, file in zip(shards, names, strict=True):
        save_file(shard, path / file, metadata={"format": "pt"})
        weight_map.update(dict.fromkeys(shard, file))
    total = sum(t.numel() * t.element_size() for t in state.values())
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    (path / WEIGHTS_INDEX).write_text(json.dumps(index, indent=2))
