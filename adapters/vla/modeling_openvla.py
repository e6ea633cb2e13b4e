r"""OpenVLA on maintained transformers modules (no remote code): `OpenVLAForActionPrediction`, `load_openvla`.

`load_openvla` (also `OpenVLAForActionPrediction.from_pretrained`, whose transformers options are
handled here) builds the network of a checkpoint in OpenVLA's published format (described in
`gipo_plugins.vla.conversion_openvla`) from transformers' own `Dinov2WithRegistersModel`,
`SiglipVisionModel` and `LlamaForCausalLM` and maps the weights with `published_to_transformers`.
The architecture sizes come from the checkpoint's tensor shapes (read from the safetensors
headers); attention heads, which no shape reveals, come from the timm model id (`VISION_TOWERS`).
Every tensor must be consumed and every parameter filled, or loading raises a `ValueError`. A
saved folder has no `auto_map`: the remote-code files it would point to are not written (that code
pins transformers 4.40 and timm 0.9), so it loads with `load_openvla` or the Auto classes (after
`import gipo_plugins.vla`), not with OpenVLA's `trust_remote_code` loader.

Why transformers' modules and not timm: the names are timm's, but timm needs torchvision, whose
PyPI build must match the installed torch build exactly (beside the CPU build of torch here it
fails to import), while transformers is already pinned by the `[trl]` extra and its modules bring
SDPA attention, bf16 and gradient checkpointing. The numerics are matched to timm's: exact GELU
(OpenVLA's `timm_override_act_layers` is `[null, null]`, timm's default), LayerNorm
$\epsilon = 10^{-6}$, DINOv2's LayerScale, features of the second-to-last block without the final
norm and without the class/register tokens.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import safe_open
from torch import Tensor, nn
from transformers import (
    Dinov2WithRegistersConfig,
    Dinov2WithRegistersModel,
    GenerationConfig,
    LlamaForCausalLM,
    PreTrainedConfig,
    PreTrainedModel,
    SiglipVisionConfig,
    SiglipVisionModel,
)
from transformers.modeling_outputs import CausalLMOutputWithPast

from gipo_plugins.vla.configuration_openvla import (
    _ACTIVATIONS,
    EMPTY_TOKEN,
    EMPTY_TOKEN_ID,
    OpenVLAConfig,
    TowerSpec,
    _tower_spec,
)
from gipo_plugins.vla.conversion_openvla import (
    _PASSTHROUGH,
    _shapes,
    _tower_prefixes,
    _weight_files,
    _with_statistics,
    published_to_transformers,
    read_config,
    save_published_weights,
    transformers_to_published,
)
from gipo_plugins.vla.policy import (
    ActionPredictionMixin,
    check_pixel_values,
    next_token_loss,
    register_auto_classes,
    splice_patches,
)


@dataclass(frozen=True)
class TowerDims:
    """A vision tower's sizes, from a checkpoint's shapes or a `TowerSpec`'s full size."""

    hidden_size: int
    depth: int
    mlp_size: int
    patch_size: int


def _tower_config(spec: TowerSpec, dims: TowerDims, image_size: int, act: str | None) -> PreTrainedConfig:
    common = {"hidden_size": dims.hidden_size, "num_hidden_layers": dims.depth, "num_attention_heads": spec.num_heads,
              "image_size": image_size, "patch_size": dims.patch_size, "layer_norm_eps": 1e-6,
              "hidden_act": _ACTIVATIONS[act]}  # fmt: skip
    if dims.hidden_size % spec.num_heads:
        raise ValueError(f"a {spec.family} tower of width {dims.hidden_size} cannot have {spec.num_heads} heads")
    if spec.family == "dinov2":
        if dims.mlp_size % dims.hidden_size:  # transformers' DINOv2 takes an integer MLP ratio
            raise ValueError(f"a DINOv2 tower needs an MLP width that is a multiple of {dims.hidden_size}, "
                             f"got {dims.mlp_size}")  # fmt: skip
        return Dinov2WithRegistersConfig(
            **common, mlp_ratio=dims.mlp_size // dims.hidden_size, num_register_tokens=spec.registers,
            layerscale_value=1e-5, qkv_bias=True,
        )  # fmt: skip
    return SiglipVisionConfig(**common, intermediate_size=dims.mlp_size, vision_use_head=False)


class VisionBackbone(nn.Module):
    """OpenVLA's vision backbone: patch features of each tower's second-to-last block, concatenated.

    `pixel_values` are channel-stacked, `[B, 3 × towers, S, S]` (each tower its own normalisation).
    """

    def __init__(self, config: OpenVLAConfig, dims: Sequence[TowerDims]):
        super().__init__()
        specs = [_tower_spec(i) for i in config.timm_model_ids]
        towers = [
            (Dinov2WithRegistersModel if s.family == "dinov2" else SiglipVisionModel)(
                _tower_config(s, d, config.image_size, act)
            )
            for s, d, act in zip(specs, dims, config.timm_override_act_layers, strict=True)
        ]
        self.featurizer = towers[0]
        self.fused_featurizer = towers[1] if len(towers) == 2 else None
        self._prefix_tokens = [(1 + s.registers) if s.family == "dinov2" else 0 for s in specs]
        self.embed_dim = sum(d.hidden_size for d in dims)

    def forward(self, pixel_values: Tensor) -> Tensor:
        towers = [self.featurizer] + ([self.fused_featurizer] if self.fused_featurizer is not None else [])
        images = pixel_values.split(3, dim=1)
        features = [
            tower(image, output_hidden_states=True).hidden_states[-2][:, prefix:]
            for tower, image, prefix in zip(towers, images, self._prefix_tokens, strict=True)
        ]
        return torch.cat(features, dim=-1)


class PrismaticProjector(nn.Module):
    """`fused-gelu-mlp`: fc1 (D→4D) GELU fc2 (4D→d) GELU fc3 (d→d); `gelu-mlp`: fc1 (D→d) GELU fc2 (d→d)."""

    def __init__(self, fused: bool, vision_dim: int, llm_dim: int):
        super().__init__()
        self.fused = fused
        if fused:
            self.fc1 = nn.Linear(vision_dim, 4 * vision_dim)
            self.fc2 = nn.Linear(4 * vision_dim, llm_dim)
            self.fc3 = nn.Linear(llm_dim, llm_dim)
        else:
            self.fc1 = nn.Linear(vision_dim, llm_dim)
            self.fc2 = nn.Linear(llm_dim, llm_dim)
        self.act = nn.GELU()

    def forward(self, patches: Tensor) -> Tensor:
        x = self.fc2(self.act(self.fc1(patches)))
        return self.fc3(self.act(x)) if self.fused else x


class OpenVLAForActionPrediction(ActionPredictionMixin, PreTrainedModel):
    """OpenVLA on transformers modules, loaded from and saved to OpenVLA's published format; a `VLAPolicy`.

    `forward(input_ids, attention_mask, pixel_values)` returns text-aligned logits (`logits[:, t]`
    predicts `input_ids[:, t + 1]`; the patch positions are dropped) and, with `labels`, the
    causal-LM loss on the non-`-100` labels. Rows may be left-padded (the patches go right after
    each row's BOS), so batches of any size work, where the remote code takes one prompt at a time.

    Args:
        config: the `OpenVLAConfig`.
        tower_dims: sizes of each vision tower (default: the full size of the timm id).
        passthrough_shapes: shapes of published tensors the model never uses but carries verbatim
            (SigLIP's attention-pool head), by published name.
    """

    config_class = OpenVLAConfig
    base_model_prefix = "model"  # no such attribute: `base_model` is the model itself
    main_input_name = "input_ids"
    supports_gradient_checkpointing = True
    _no_split_modules = ("LlamaDecoderLayer",)

    def __init__(self, config: OpenVLAConfig, tower_dims: Sequence[TowerDims] | None = None,
                 passthrough_shapes: dict[str, Sequence[int]] | None = None):  # fmt: skip
        super().__init__(config)
        if tower_dims is None:
            specs = [_tower_spec(i) for i in config.timm_model_ids]
            tower_dims = [TowerDims(s.hidden_size, s.depth, s.mlp_size, s.patch_size) for s in specs]
        self.tower_dims = list(tower_dims)
        self.vision_backbone = VisionBackbone(config, self.tower_dims)
        self.projector = PrismaticProjector(
            config.use_fused_vision_backbone, self.vision_backbone.embed_dim, config.text_config.hidden_size
        )
        self.language_model = LlamaForCausalLM(config.text_config)
        self.passthrough = nn.Module()  # verbatim tensors, by published name with "." → "__"
        for name, shape in (passthrough_shapes or {}).items():
            self.passthrough.register_buffer(name.replace(".", "__"), torch.zeros(tuple(shape)))
        self.post_init()
        self.generation_config = GenerationConfig(
            bos_token_id=config.bos_token_id, eos_token_id=config.eos_token_id, pad_token_id=config.pad_token_id
        )

    @property
    def _decode_vocab_size(self) -> int:
        return self.config.text_config.vocab_size - self.config.pad_to_multiple_of

    @property
    def _empty_token_id(self) -> int:
        empty = getattr(self.config, "empty_token_id", None)
        return EMPTY_TOKEN_ID if empty is None else empty

    def get_input_embeddings(self) -> nn.Module:
        return self.language_model.get_input_embeddings()

    def get_output_embeddings(self) -> nn.Module:
        return self.language_model.get_output_embeddings()

    def forward(
        self,
        input_ids: Tensor,
        attention_mask: Tensor | None = None,
        pixel_values: Tensor | None = None,
        labels: Tensor | None = None,
        logits_to_keep: int = 0,
        **kwargs,
    ) -> CausalLMOutputWithPast:
        pixel_values = check_pixel_values(
            pixel_values, input_ids.shape[0], 3 * len(self.tower_dims), self.config.image_size
        )
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        dtype = self.projector.fc1.weight.dtype
        patches = self.projector(self.vision_backbone(pixel_values.to(dtype)))
        embeds, mask, predict_slot = splice_patches(self.get_input_embeddings()(input_ids), patches, attention_mask)
        hidden = self.language_model.model(inputs_embeds=embeds, attention_mask=mask, use_cache=False).last_hidden_state
        hidden = hidden.gather(1, predict_slot[..., None].expand(-1, -1, hidden.shape[-1]))
        logits = self.language_model.lm_head(hidden[:, -logits_to_keep:] if logits_to_keep else hidden)
        return CausalLMOutputWithPast(loss=next_token_loss(logits, labels), logits=logits)

    # ----------------------------------------------------------------------------- published format

    def published_state_dict(self) -> dict[str, Tensor]:
        """The weights under OpenVLA's published names (see `transformers_to_published`)."""
        return transformers_to_published(self.state_dict(), self.config)

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        """`nn.Module.load_state_dict`, also accepting OpenVLA's published names (converted first)."""
        if any(k.startswith("vision_backbone.featurizer.blocks.") for k in state_dict):
            state_dict = dict(published_to_transformers(state_dict.items(), self.config))
        return super().load_state_dict(state_dict, strict=strict, assign=assign)

    def save_pretrained(self, save_directory: str | Path, *, state_dict: dict | None = None,
                        max_shard_size: int = 5 * 2**30, is_main_process: bool = True, **kwargs) -> None:  # fmt: skip
        """Write `config.json` and safetensors weights (sharded past `max_shard_size` bytes) in OpenVLA's layout.

        The checkpoint's `auto_map` (to OpenVLA's remote-code files) is left out of the saved
        `config.json`: those files are not written (that code pins transformers 4.40 and timm 0.9),
        so the saved folder loads with `load_openvla` / the Auto classes after importing
        `gipo_plugins.vla`, not with `trust_remote_code`.
        """
        if not is_main_process:
            return
        path = Path(save_directory)
        path.mkdir(parents=True, exist_ok=True)
        state = transformers_to_published(state_dict if state_dict is not None else self.state_dict(), self.config)
        self.config.architectures = ["OpenVLAForActionPrediction"]
        config = copy.deepcopy(self.config)
        if hasattr(config, "auto_map"):
            del config.auto_map
        config.save_pretrained(path)
        self.generation_config.save_pretrained(path)
        save_published_weights(state, path, max_shard_size=max_shard_size)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | Path, *model_args,
                        **kwargs) -> OpenVLAForActionPrediction | tuple[OpenVLAForActionPrediction, dict]:  # fmt: skip
        """`load_openvla` behind `PreTrainedModel.from_pretrained`'s options (also reached through the Auto classes).

        Honoured: `subfolder`; `dtype` (or `torch_dtype`; `"auto"` = as stored); `device_map` as one
        device (`"cpu"`, `"cuda:0"`, an index, or `{"": device}`); `config` (an `OpenVLAConfig`, e.g.
        the one the Auto classes read; `dataset_statistics.json` is still merged in);
        `output_loading_info` (all lists empty: anything missing or unexpected raises);
        `generation_config`. Ignored as harmless: the Hub options (`cache_dir`, `force_download`,
        `local_files_only`, `proxies`, `token`, `revision`: the folder is read locally),
        `trust_remote_code` (the local code is used either way), `adapter_kwargs` without an
        adapter, the options transformers itself no longer uses (`low_cpu_mem_usage`, ...),
        `disable_mmap`, and transformers' private bookkeeping (`_from_auto`, `_from_pipeline`, any
        `_from_*`, `_commit_hash`). Everything else is accepted only at its default value.

        Raises:
            ValueError: naming each option that cannot be honoured (e.g. `device_map="auto"`,
                `quantization_config`, `variant`, `use_safetensors=False`, `state_dict`,
                `attn_implementation` other than `"sdpa"`, or a config override such as
                `output_attentions=True`), positional model arguments, or what `load_openvla` raises.
        """
        if model_args:
            raise ValueError(f"positional model arguments are not supported by OpenVLA's loader, got {len(model_args)}")
        options, unsupported = _from_pretrained_options(kwargs)
        if unsupported:
            raise ValueError(f"unsupported from_pretrained options for OpenVLA: {', '.join(unsupported)} (honoured: "
                             f"{', '.join(_HONOURED)}; see OpenVLAForActionPrediction.from_pretrained)")  # fmt: skip
        path = Path(pretrained_model_name_or_path)
        model = load_openvla(path / options["subfolder"] if options["subfolder"] else path, dtype=options["dtype"],
                             device=options["device"], config=options["config"])  # fmt: skip
        if options["generation_config"] is not None:
            model.generation_config = options["generation_config"]
        if options["output_loading_info"]:
            return model, {"missing_keys": set(), "unexpected_keys": set(), "mismatched_keys": set(), "error_msgs": []}
        return model


_HONOURED = ("subfolder", "dtype", "torch_dtype", "device_map", "config", "output_loading_info", "generation_config")
_HARMLESS = frozenset({
    "cache_dir", "force_download", "local_files_only", "proxies", "token", "revision", "trust_remote_code",
    "code_revision", "disable_mmap", "mirror", "_fast_init", "low_cpu_mem_usage", "from_tf", "from_flax",
    "offload_state_dict", "resume_download", "weights_only", "_commit_hash",
})  # fmt: skip
"""`from_pretrained` options that do not change what a local OpenVLA folder loads into (any value)."""
_DEFAULTS = {
    "ignore_mismatched_sizes": False, "use_safetensors": (None, True), "state_dict": None,
    "variant": None, "quantization_config": None, "gguf_file": None, "max_memory": None, "offload_folder": None,
    "offload_buffers": False, "key_mapping": None, "tp_plan": None, "tp_size": None, "distributed_config": None,
    "device_mesh": None, "use_kernels": (None, False), "kernel_config": None, "kernels_mode": None,
    "allow_all_kernels": False, "adapter_name": "default", "fusion_config": None, "tqdm_class": None,
    "experts_implementation": None,
}  # fmt: skip
"""Options the loader cannot honour, accepted at these values only (transformers' defaults)."""
_SINGLE_DEVICE_MAP = (str, int, torch.device)
_DEVICE_MAP_STRATEGIES = ("auto", "balanced", "balanced_low_0", "sequential")


def _from_pretrained_options(kwargs: dict) -> tuple[dict, list[str]]:
    """Split `from_pretrained` keyword arguments into what `load_openvla` takes and the names it cannot honour."""
    kwargs = dict(kwargs)
    unsupported = []
    dtype = kwargs.pop("dtype", None)
    torch_dtype = kwargs.pop("torch_dtype", None)  # transformers' older name, still accepted
    dtype = dtype if dtype is not None else torch_dtype
    device_map = kwargs.pop("device_map", None)
    if isinstance(device_map, dict) and set(device_map) == {""}:
        device_map = device_map[""]
    device = None
    if device_map is not None:
        if device_map in _DEVICE_MAP_STRATEGIES or not isinstance(device_map, _SINGLE_DEVICE_MAP):
            unsupported.append(f"'device_map'={device_map!r} (pass one device, e.g. 'cuda:0')")
        else:
            device = device_map
    config = kwargs.pop("config", None)
    if config is not None and not isinstance(config, OpenVLAConfig):
        unsupported.append(f"'config'={config!r} (an OpenVLAConfig is honoured)")
        config = None
    if config is not None and getattr(config, "_attn_implementation_internal", None) not in (None, "sdpa"):
        unsupported.append(f"'attn_implementation'={config._attn_implementation_internal!r} (the towers and the "
                           "LM use 'sdpa')")  # fmt: skip
    attn = kwargs.pop("attn_implementation", None)
    if attn not in (None, "sdpa"):
        unsupported.append(f"'attn_implementation'={attn!r} (the towers and the LM use 'sdpa')")
    adapter_kwargs = kwargs.pop("adapter_kwargs", None) or {}
    if "_adapter_model_path" in adapter_kwargs:  # the Auto classes found a PEFT adapter
        unsupported.append("'adapter_kwargs' (a PEFT adapter)")
    options = {"dtype": None if dtype == "auto" else dtype, "device": device, "config": config,
               "subfolder": kwargs.pop("subfolder", None) or "",
               "output_loading_info": bool(kwargs.pop("output_loading_info", False)),
               "generation_config": kwargs.pop("generation_config", None)}  # fmt: skip
    for name, value in kwargs.items():
        if name in _HARMLESS or name.startswith("_from_"):
            continue
        if name in _DEFAULTS:
            allowed = _DEFAULTS[name] if isinstance(_DEFAULTS[name], tuple) else (_DEFAULTS[name],)
            if any(value is a or (type(value) is type(a) and value == a) for a in allowed):
                continue
        elif name.startswith("_") and (value is None or value is False):  # other private bookkeeping, at its default
            continue
        unsupported.append(repr(name))
    return options, unsupported


# --------------------------------------------------------------------------------------------------
# Loading a published checkpoint
# --------------------------------------------------------------------------------------------------


def _tower_dims(shapes: dict[str, tuple[int, ...]], prefix: str) -> TowerDims:
    try:
        hidden, _, patch, _ = shapes[f"{prefix}patch_embed.proj.weight"]
        depth = 1 + max(int(k.removeprefix(prefix).split(".")[1]) for k in shapes if k.startswith(f"{prefix}blocks."))
        mlp = shapes[f"{prefix}blocks.0.mlp.fc1.weight"][0]
    except (KeyError, ValueError) as error:
        raise ValueError(f"the checkpoint has no complete vision tower under {prefix}*") from error
    return TowerDims(hidden, depth, mlp, patch)


def _tokenizer_token_id(path: Path, token: str) -> int | None:
    """The id of `token` in `path`'s `tokenizer.json` (`None` without the file or the token)."""
    if not (path / "tokenizer.json").exists():
        return None
    from tokenizers import Tokenizer

    return Tokenizer.from_file(str(path / "tokenizer.json")).token_to_id(token)


def load_openvla(path: str | Path, *, dtype: torch.dtype | str | None = None,
                 device: str | torch.device | None = None,
                 config: OpenVLAConfig | None = None) -> OpenVLAForActionPrediction:  # fmt: skip
    """Load a checkpoint in OpenVLA's published format (see `gipo_plugins.vla.conversion_openvla`).

    Builds the model without allocating weights, then streams each safetensors file through
    `published_to_transformers`. Peak memory is about one shard beyond the model.

    Args:
        path: the checkpoint folder.
        dtype: parameter dtype (default: as stored, e.g. bf16 for OpenVLA-7B); buffers such as
            RoPE's frequencies keep their own dtype.
        device: where the model goes (default: CPU).
        config: use this configuration instead of the folder's `config.json` (a copy;
            `dataset_statistics.json` is merged in as by `read_config`).

    Raises:
        ValueError: not an OpenVLA checkpoint, unexpected or missing tensors, or mismatched shapes.
    """
    from accelerate import init_empty_weights

    path = Path(path)
    config = read_config(path) if config is None else _with_statistics(copy.deepcopy(config), path)
    if config.empty_token_id is None:
        config.empty_token_id = _tokenizer_token_id(path, EMPTY_TOKEN)
    files = _weight_files(path)
    shapes = _shapes(files)
    dims = [_tower_dims(shapes, prefix) for prefix in _tower_prefixes(config)]
    passthrough = {k: v for k, v in shapes.items() if _PASSTHROUGH.fullmatch(k)}
    with init_empty_weights():
        model = OpenVLAForActionPrediction(config, dims, passthrough)
    dtype = None if dtype == "auto" else getattr(torch, dtype) if isinstance(dtype, str) else dtype
    expected = {n: p for n, p in model.state_dict().items()}
    loaded: set[str] = set()
    for file in files:
        with safe_open(file, framework="pt") as f:
            published = ((k, f.get_tensor(k)) for k in f.keys())  # noqa: SIM118
            converted = {}
            for name, tensor in published_to_transformers(published, config):
                if name not in expected:
                    raise ValueError(f"unexpected tensor {name} (converted) in {file.name}")
                if tuple(tensor.shape) != tuple(expected[name].shape):
                    raise ValueError(f"{name}: shape {tuple(tensor.shape)} in the checkpoint, "
                                     f"{tuple(expected[name].shape)} in the model")  # fmt: skip
                converted[name] = tensor.to(dtype) if dtype is not None and tensor.is_floating_point() else tensor
            model.load_state_dict(converted, strict=False, assign=True)
            loaded |= set(converted)
    mask_token = "vision_backbone.featurizer.embeddings.mask_token"  # transformers-only, unused by OpenVLA
    if mask_token in expected and mask_token not in loaded and mask_token.replace("mask", "cls") in loaded:
        cls_token = model.vision_backbone.featurizer.embeddings.cls_token
        model.load_state_dict({mask_token: cls_token.new_zeros(expected[mask_token].shape)}, strict=False, assign=True)
        loaded.add(mask_token)
    missing = sorted(set(expected) - loaded)
    if missing:
        raise ValueError(f"the checkpoint lacks {len(missing)} tensors, e.g. {missing[:5]}")
    model.config._name_or_path = str(path)
    model.eval()
    return model.to(device) if device is not None else model


register_auto_classes(OpenVLAConfig, OpenVLAForActionPrediction)
