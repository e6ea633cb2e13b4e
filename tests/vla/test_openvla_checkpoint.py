"""OpenVLA's published checkpoint format: loading, the vision remap, decoding, saving, and GIPO steps on it."""

from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open
from transformers import AutoModelForCausalLM
from vla_helpers import DEPTH, IMAGE_SIZE, NORM_STATS, PATCH, published_tensors

from gipo_plugins.vla.actions import PROMPT
from gipo_plugins.vla.modeling_openvla import OpenVLAForActionPrediction, load_openvla
from gipo_plugins.vla.policy import action_log_probs, decode_actions, sample_action_tokens
from gipo_plugins.vla.processing_openvla import OpenVLAProcessor
from gipo_plugins.vla.trainer import VLAGIPOConfig, VLAGIPOTrainer, goal_dataset


def images(batch: int = 2, size: int = IMAGE_SIZE, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (batch, size, size, 3), dtype=np.uint8)


def load_fp32(path):
    return load_openvla(path, dtype=torch.float32), OpenVLAProcessor.from_pretrained(path)


# ---------------------------------------------------------------- loading the published layout


def test_loader_reads_the_published_config_and_consumes_every_tensor(published_vla):
    model = load_openvla(published_vla)
    config = model.config
    assert config.vision_backbone_id == "dinosiglip-vit-so-224px" and config.use_fused_vision_backbone
    assert config.image_size == IMAGE_SIZE and config.text_config.vocab_size == 576
    assert config.text_config.rms_norm_eps == 1e-6  # not in the file: transformers-4.40's LlamaConfig default
    assert [(d.hidden_size, d.depth, d.mlp_size, d.patch_size) for d in model.tower_dims] == [
        (32, DEPTH, 128, PATCH), (32, DEPTH, 119, PATCH)]  # fmt: skip
    assert next(model.parameters()).dtype == torch.bfloat16  # as stored
    assert not model.training
    # every published tensor is in the model, unchanged (qkv split and position rows checked through the round trip)
    published = published_tensors()
    state = model.state_dict()
    torch.testing.assert_close(state["projector.fc2.weight"], published["projector.fc2.weight"], rtol=0, atol=0)
    dino, siglip = "vision_backbone.featurizer.", "vision_backbone.fused_featurizer."
    q = state[f"{dino}encoder.layer.1.attention.q_proj.weight"]
    torch.testing.assert_close(q, published[f"{dino}blocks.1.attn.qkv.weight"][:32], rtol=0, atol=0)
    v = state[f"{siglip}encoder.layers.0.self_attn.v_proj.bias"]
    torch.testing.assert_close(v, published[f"{siglip}blocks.0.attn.qkv.bias"][64:], rtol=0, atol=0)
    # the Auto classes pick the local implementation (no trust_remote_code) for model_type "openvla"
    auto = AutoModelForCausalLM.from_pretrained(published_vla)
    assert type(auto) is OpenVLAForActionPrediction


def test_save_pretrained_writes_the_published_layout_back_exactly(published_vla, tmp_path):
    model = load_openvla(published_vla)
    model.save_pretrained(tmp_path, max_shard_size=200_000)  # small shards: exercise the index
    index = json.loads((tmp_path / "model.safetensors.index.json").read_text())
    assert len(set(index["weight_map"].values())) > 1
    saved = {}
    for file in sorted(set(index["weight_map"].values())):
        with safe_open(tmp_path / file, framework="pt") as f:
            saved.update({k: f.get_tensor(k) for k in f.keys()})  # noqa: SIM118
    published = published_tensors()
    assert set(saved) == set(published)
    for name, tensor in published.items():
        torch.testing.assert_close(saved[name], tensor, rtol=0, atol=0, msg=name)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["model_type"] == "openvla" and config["timm_model_ids"][0].startswith("vit_large_patch14_reg4")
    assert config["norm_stats"]["metaworld"]["action"]["q01"] == NORM_STATS["metaworld"]["action"]["q01"]


def test_loader_rejects_foreign_or_incomplete_checkpoints(published_vla, tmp_path):
    from safetensors.torch import save_file

    from gipo_plugins.vla.configuration_openvla import OpenVLAConfig

    folder = Path(published_vla)
    for name in ("config.json", "preprocessor_config.json", "tokenizer.json", "tokenizer_config.json"):
        (tmp_path / name).write_bytes((folder / name).read_bytes())
    tensors = published_tensors()
    extra = "vision_backbone.featurizer.blocks.0.attn.extra"
    save_file({**tensors, extra: torch.zeros(1)}, tmp_path / "model.safetensors")
    with pytest.raises(ValueError, match=re.escape(f"unexpected tensor {extra}")):
        load_openvla(tmp_path)
    del tensors["language_model.model.norm.weight"]
    save_file(tensors, tmp_path / "model.safetensors")
    with pytest.raises(ValueError, match="lacks 1 tensors"):
        load_openvla(tmp_path)
    config = json.loads((folder / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**config, "model_type": "llava"}))
    with pytest.raises(ValueError, match="model_type must be 'openvla'"):
        load_openvla(tmp_path)
    with pytest.raises(ValueError, match="vision_backbone_id"):
        OpenVLAConfig(vision_backbone_id="clip-vit-l")
    with pytest.raises(ValueError, match="timm_model_ids"):
        OpenVLAConfig(timm_model_ids=["vit_base_patch16_224", "vit_so400m_patch14_siglip_224"])


def test_from_pretrained_honours_transformers_options_and_rejects_the_rest_by_name(published_vla, tmp_path):
    """What `PreTrainedModel.from_pretrained` (and the Auto classes) pass: honoured, harmless, or refused by name."""
    import shutil

    from transformers import AutoConfig

    shutil.copytree(published_vla, tmp_path / "checkpoint" / "openvla")
    reference = load_openvla(published_vla, dtype=torch.float32)
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "checkpoint", subfolder="openvla", dtype=torch.float32,
                                                 device_map="cpu", local_files_only=True, revision="main",
                                                 trust_remote_code=False, low_cpu_mem_usage=True)  # fmt: skip
    assert type(model) is OpenVLAForActionPrediction and next(model.parameters()).dtype == torch.float32
    for name, tensor in reference.state_dict().items():
        torch.testing.assert_close(model.state_dict()[name], tensor, rtol=0, atol=0, msg=name)
    assert model.config.norm_stats == reference.config.norm_stats and model.config.text_config.rms_norm_eps == 1e-6
    assert next(AutoModelForCausalLM.from_pretrained(published_vla, dtype="auto").parameters()).dtype == torch.bfloat16
    assert next(AutoModelForCausalLM.from_pretrained(published_vla, torch_dtype="float32").parameters()).dtype == (
        torch.float32)  # fmt: skip
    model = OpenVLAForActionPrediction.from_pretrained(published_vla, device_map={"": "cpu"}, _from_pipeline="x",
                                                       _from_a_future_transformers=True)  # fmt: skip
    assert next(model.parameters()).device.type == "cpu"
    model, info = OpenVLAForActionPrediction.from_pretrained(published_vla, output_loading_info=True)
    assert info == {"missing_keys": set(), "unexpected_keys": set(), "mismatched_keys": set(), "error_msgs": []}
    config = AutoConfig.from_pretrained(published_vla)
    config.norm_stats = {"mine": NORM_STATS["metaworld"]}
    assert OpenVLAForActionPrediction.from_pretrained(published_vla, config=config).get_action_dim("mine") == 4
    for option in ({"device_map": "auto"}, {"variant": "fp16"}, {"use_safetensors": False},
                   {"quantization_config": {"load_in_8bit": True}}, {"key_mapping": {"a": "b"}},
                   {"attn_implementation": "flash_attention_2"}, {"state_dict": {}}, {"config": "other/config.json"},
                   {"_adapter_model_path": "adapter"}, {"output_attentions": True}):  # fmt: skip
        with pytest.raises(ValueError, match=re.escape(repr(next(iter(option))))):
            OpenVLAForActionPrediction.from_pretrained(published_vla, **option)
    with pytest.raises(ValueError, match="'attn_implementation'='eager'"):  # absorbed into the config by the Auto class
        AutoModelForCausalLM.from_pretrained(published_vla, attn_implementation="eager")
    with pytest.raises(ValueError, match="positional"):
        OpenVLAForActionPrediction.from_pretrained(published_vla, None)


def test_saved_folder_has_no_dangling_auto_map(published_vla, tmp_path):
    """OpenVLA's `auto_map` points at remote-code files a saved folder does not have: it is dropped on save."""
    import shutil

    source = shutil.copytree(published_vla, tmp_path / "published")
    tokenizer_config = json.loads((source / "tokenizer_config.json").read_text())  # OpenVLA-7B's names the processor
    tokenizer_config["auto_map"] = {"AutoProcessor": "processing_prismatic.PrismaticProcessor"}
    (source / "tokenizer_config.json").write_text(json.dumps(tokenizer_config))
    model, processor = load_fp32(source)
    assert "configuration_prismatic.OpenVLAConfig" in json.dumps(model.config.auto_map)  # as published
    tmp_path = tmp_path / "saved"
    model.save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    assert {"config.json", "preprocessor_config.json", "tokenizer_config.json"} <= {f.name for f in tmp_path.iterdir()}
    for file in sorted(tmp_path.glob("*.json")):
        auto_map = json.loads(file.read_text()).get("auto_map", {})
        modules = {ref.split("--")[-1].rsplit(".", 1)[0] for refs in auto_map.values()
                   for ref in (refs if isinstance(refs, list) else [refs]) if ref}  # fmt: skip
        assert all((tmp_path / f"{m}.py").exists() for m in modules), f"{file.name}: auto_map to missing {modules}"
    assert model.config.auto_map  # the model in memory keeps what it was loaded with
    reloaded = AutoModelForCausalLM.from_pretrained(tmp_path, dtype=torch.float32)  # still found without auto_map
    assert type(reloaded) is OpenVLAForActionPrediction
    inputs = OpenVLAProcessor.from_pretrained(tmp_path)(images(1), "reach the goal")
    with torch.no_grad():
        torch.testing.assert_close(reloaded(**inputs).logits, model(**inputs).logits, rtol=0, atol=0)


# ---------------------------------------------------------------- the vision remap against timm's forward


def _timm_vit_features(tensors: dict, prefix: str, pixels: torch.Tensor, *, heads: int = 16) -> torch.Tensor:
    """timm's `get_intermediate_layers(n={depth - 2})` written out for the published tensors (no timm needed)."""
    t = {k.removeprefix(prefix): v.float() for k, v in tensors.items() if k.startswith(prefix)}
    x = torch.nn.functional.conv2d(pixels, t["patch_embed.proj.weight"], t["patch_embed.proj.bias"], stride=PATCH)
    x = x.flatten(2).transpose(1, 2) + t["pos_embed"]  # no_embed_class: positions on the patches only
    prefix_tokens = [t[k].expand(len(x), -1, -1) for k in ("cls_token", "reg_token") if k in t]
    x = torch.cat([*prefix_tokens, x], 1)
    width = x.shape[-1]
    for i in range(DEPTH - 1):  # up to and including block depth - 2
        b = f"blocks.{i}."
        h = torch.nn.functional.layer_norm(x, (width,), t[b + "norm1.weight"], t[b + "norm1.bias"], eps=1e-6)
        q, k, v = (h @ t[b + "attn.qkv.weight"].T + t[b + "attn.qkv.bias"]).unflatten(-1, (3, heads, -1)).unbind(2)
        attention = torch.softmax(q.transpose(1, 2) @ k.permute(0, 2, 3, 1) / q.shape[-1] ** 0.5, -1)
        h = (attention @ v.transpose(1, 2)).transpose(1, 2).flatten(2)
        h = h @ t[b + "attn.proj.weight"].T + t[b + "attn.proj.bias"]
        x = x + h * t.get(b + "ls1.scale_factor", 1.0)
        h = torch.nn.functional.layer_norm(x, (width,), t[b + "norm2.weight"], t[b + "norm2.bias"], eps=1e-6)
        h = torch.nn.functional.gelu(h @ t[b + "mlp.fc1.weight"].T + t[b + "mlp.fc1.bias"])
        x = x + (h @ t[b + "mlp.fc2.weight"].T + t[b + "mlp.fc2.bias"]) * t.get(b + "ls2.scale_factor", 1.0)
    return x[:, sum(p.shape[1] for p in prefix_tokens) :]


def test_vision_features_match_timms_forward_on_the_published_tensors(published_vla):
    model, processor = load_fp32(published_vla)
    pixel_values = processor(images(), "reach the goal")["pixel_values"]
    assert pixel_values.shape == (2, 6, IMAGE_SIZE, IMAGE_SIZE)
    tensors = published_tensors()
    expected = torch.cat([
        _timm_vit_features(tensors, "vision_backbone.featurizer.", pixel_values[:, :3]),
        _timm_vit_features(tensors, "vision_backbone.fused_featurizer.", pixel_values[:, 3:]),
    ], -1)  # fmt: skip
    with torch.no_grad():
        features = model.vision_backbone(pixel_values)
    assert features.shape == (2, (IMAGE_SIZE // PATCH) ** 2, 64)
    torch.testing.assert_close(features, expected, rtol=1e-4, atol=1e-4)


def test_vision_features_match_timm_itself(published_vla):
    """The same against timm's own ViT, where timm imports.

    timm imports torchvision, which must be built for the installed torch: PyPI has only CUDA builds of
    torchvision for x86_64 Linux, and they fail to load beside the CPU torch wheel (and then break
    transformers' `AutoProcessor`), so the CPU test environment does not install timm and this skips there.
    """
    try:
        import timm
    except (ImportError, RuntimeError) as error:  # RuntimeError: a torchvision built for another torch
        pytest.skip(f"timm does not import here ({error}); it needs a torchvision built for this torch")
    from timm.models.vision_transformer import VisionTransformer

    model, processor = load_fp32(published_vla)
    pixel_values = processor(images(), "reach the goal")["pixel_values"]
    tensors = {k: v.float() for k, v in published_tensors().items()}
    towers = {  # the timm model definitions of vit_large_patch14_reg4_dinov2 and vit_so400m_patch14_siglip_224
        "vision_backbone.featurizer.": {"reg_tokens": 4, "no_embed_class": True, "init_values": 1e-5},
        "vision_backbone.fused_featurizer.": {"class_token": False, "global_pool": "map", "mlp_ratio": 3.7362},
    }
    expected = []
    for (prefix, kwargs), image in zip(towers.items(), pixel_values.split(3, 1), strict=True):
        vit = VisionTransformer(img_size=IMAGE_SIZE, patch_size=PATCH, embed_dim=32, depth=DEPTH, num_heads=16,
                                num_classes=0, **kwargs)  # fmt: skip
        state = {k.removeprefix(prefix).replace("scale_factor", "gamma"): v for k, v in tensors.items()
                 if k.startswith(prefix)}  # fmt: skip
        vit.load_state_dict(state, strict=True)
        expected.append(vit.eval().get_intermediate_layers(image, n={DEPTH - 2})[0])
    with torch.no_grad():
        torch.testing.assert_close(model.vision_backbone(pixel_values), torch.cat(expected, -1), rtol=1e-4, atol=1e-4)
    assert timm.__version__


# ---------------------------------------------------------------- processor and action decoding


def test_processor_builds_openvlas_prompt_and_channel_stacked_pixels(published_vla):
    processor = OpenVLAProcessor.from_pretrained(published_vla)
    tokenizer = processor.tokenizer
    inputs = processor(images(2), ["reach the goal", "push the puck to the goal"])
    first = inputs["input_ids"][0][inputs["attention_mask"][0].bool()].tolist()
    assert first[0] == tokenizer.bos_token_id and first[-1] == tokenizer.convert_tokens_to_ids("▁")
    assert tokenizer.decode(first[1:-1]).strip() == PROMPT.format(instruction="reach the goal")
    assert inputs["attention_mask"][0, 0] == 0 and inputs["input_ids"][0, 0] == 512  # left-padded with <PAD>
    raw = torch.as_tensor(images(2)).permute(0, 3, 1, 2).float() / 255
    dino_mean = torch.tensor([0.484375, 0.455078125, 0.40625])[:, None, None]
    dino_std = torch.tensor([0.228515625, 0.2236328125, 0.224609375])[:, None, None]
    torch.testing.assert_close(inputs["pixel_values"][:, :3], (raw - dino_mean) / dino_std)
    torch.testing.assert_close(inputs["pixel_values"][:, 3:], (raw - 0.5) / 0.5)
    assert processor(images(1, size=128), "reach the goal")["pixel_values"].shape == (1, 6, IMAGE_SIZE, IMAGE_SIZE)
    with pytest.raises(ValueError, match="no proprioception"):
        processor(images(1), "reach the goal", states=np.zeros((1, 6)))


def _openvla_decode(ids: np.ndarray, stats: dict, vocab: int = 512) -> np.ndarray:
    """OpenVLA's rule, written out: bin clip(vocab - id - 1, 0, 254) of 255 centres, then q01/q99 where mask."""
    centers = (np.linspace(-1, 1, 256)[:-1] + np.linspace(-1, 1, 256)[1:]) / 2
    normalized = centers[np.clip(vocab - ids - 1, 0, 254)]
    low, high = np.array(stats["q01"]), np.array(stats["q99"])
    return np.where(stats["mask"], 0.5 * (normalized + 1) * (high - low) + low, normalized)


def test_predict_action_follows_openvlas_decoding_and_unnormalisation(published_vla):
    model, processor = load_fp32(published_vla)
    stats = NORM_STATS["metaworld"]["action"]
    ids = np.array([[511, 256, 300, 100], [540, 511, 256, 300]])  # ends of the range, inside, below, a pad row
    decoded = decode_actions(model, torch.as_tensor(ids), "metaworld")
    np.testing.assert_allclose(decoded, _openvla_decode(ids, stats), atol=1e-6)
    assert decoded[0, 0] == pytest.approx(0.5 * (-1 + 1 / 255 + 1) * 1.0 - 0.5, abs=1e-6)
    assert decoded[0, 3] == pytest.approx(1 - 1 / 255, abs=1e-6)  # mask false: the normalised value itself
    inputs = processor(images(2), "reach the goal")
    actions = model.predict_action(inputs, unnorm_key="metaworld")
    greedy, x, mask = [], inputs["input_ids"], inputs["attention_mask"]
    with torch.no_grad():
        for _ in range(4):  # OpenVLA: greedy over the whole vocabulary, one token per action dimension
            token = model(x, mask, inputs["pixel_values"]).logits[:, -1].argmax(-1)
            greedy.append(token)
            x, mask = torch.cat([x, token[:, None]], 1), torch.cat([mask, torch.ones_like(mask[:, :1])], 1)
    np.testing.assert_allclose(actions, _openvla_decode(torch.stack(greedy, 1).numpy(), stats), atol=1e-6)
    assert model.get_action_dim("bridge_orig") == 7
    with pytest.raises(ValueError, match="unnorm_key"):
        model.get_action_stats()  # two datasets: the key is required


def _openvla_pixels(image: np.ndarray, size: int = IMAGE_SIZE) -> torch.Tensor:
    """OpenVLA's image transform written out: PIL bicubic resize of the uint8 image, to_tensor, normalise per tower."""
    from PIL import Image

    resized = np.asarray(Image.fromarray(image).resize((size, size), Image.BICUBIC))
    pixels = torch.from_numpy(resized.copy()).permute(2, 0, 1).float().div(255)
    norms = [([0.484375, 0.455078125, 0.40625], [0.228515625, 0.2236328125, 0.224609375]), ([0.5] * 3, [0.5] * 3)]
    return torch.cat([(pixels - torch.tensor(m)[:, None, None]) / torch.tensor(s)[:, None, None] for m, s in norms])


def test_processor_resizes_like_openvla_with_pil_bicubic_on_uint8(published_vla):
    processor = OpenVLAProcessor.from_pretrained(published_vla)
    rng = np.random.default_rng(1)
    noisy = rng.integers(0, 256, (2, 83, 131, 3), dtype=np.uint8)  # not square, not 56
    edges = np.zeros((1, 97, 97, 3), dtype=np.uint8)
    edges[:, 20:70, 31:60] = 255  # a sharp-edged block
    edges[:, ::9, :, 1] = 200  # and thin lines
    mild = rng.integers(0, 256, (1, 64, 64, 3), dtype=np.uint8)  # a slight downscale
    up = rng.integers(0, 256, (1, 40, 48, 3), dtype=np.uint8)  # an upscale
    for batch in (noisy, edges, mild, up):  # interpolate(bicubic, antialias) differed by up to 4, 11, 16, 21 levels
        expected = torch.stack([_openvla_pixels(image) for image in batch])
        torch.testing.assert_close(processor(batch, "reach the goal")["pixel_values"], expected, rtol=0, atol=1e-6)
    torch.testing.assert_close(processor.pixel_values(torch.from_numpy(noisy)), processor.pixel_values(noisy))


def test_predict_action_appends_the_empty_token_like_openvla(published_vla):
    """OpenVLA's processor ends the prompt at "Out:"; `predict_action` appends "▁" when the last token is not it."""
    model, processor = load_fp32(published_vla)
    tokenizer = processor.tokenizer
    empty = tokenizer.convert_tokens_to_ids("▁")
    assert empty == processor.empty_token_id == model.config.empty_token_id != 29871  # this tokenizer's "▁"
    ours = processor(images(2), ["reach the goal", "push the puck to the goal"])
    assert (ours["input_ids"][:, -1] == empty).all()
    theirs = tokenizer(PROMPT.format(instruction="reach the goal"), return_tensors="pt")  # as OpenVLA's processor
    assert theirs["input_ids"].tolist() == [ours["input_ids"][0, ours["attention_mask"][0].bool()][:-1].tolist()]
    expected = model.predict_action({k: v[:1] for k, v in ours.items()}, unnorm_key="metaworld")
    openvla_style = {**theirs, "pixel_values": ours["pixel_values"][:1]}
    np.testing.assert_array_equal(model.predict_action(openvla_style, unnorm_key="metaworld"), expected)
    # a batch mixing both: each row as alone (the row that lacks the token gets it, the other is not doubled)
    ids, mask = ours["input_ids"], ours["attention_mask"]
    mixed = {"input_ids": torch.stack([ids[0], torch.cat([ids[1, :1], ids[1, :-1]])]),  # row 1: "▁" dropped, one pad
             "attention_mask": torch.stack([mask[0], torch.cat([mask[1, :1] * 0, mask[1, :-1]])]),
             "pixel_values": ours["pixel_values"]}  # fmt: skip
    np.testing.assert_array_equal(model.predict_action(mixed, unnorm_key="metaworld"),
                                  model.predict_action(ours, unnorm_key="metaworld"))  # fmt: skip
    # without an attention mask (OpenVLA's own call passes input_ids only)
    ids_only = {"input_ids": theirs["input_ids"], "pixel_values": ours["pixel_values"][:1]}
    np.testing.assert_array_equal(model.predict_action(ids_only, unnorm_key="metaworld"), expected)


def test_sampled_log_probs_equal_the_trainers_teacher_forced_scores(published_vla):
    model, processor = load_fp32(published_vla)
    inputs = processor(images(3), "reach the goal")
    torch.manual_seed(0)
    ids, log_probs = sample_action_tokens(model, inputs, action_dim=4, temperature=1.0)
    assert ((ids >= 256) & (ids <= 511)).all()  # the policy only emits action tokens
    full_ids = torch.cat([inputs["input_ids"], ids], 1)
    full_mask = torch.cat([inputs["attention_mask"], torch.ones_like(ids)], 1)
    scored, entropy = action_log_probs(model, full_ids, full_mask, inputs["pixel_values"], 4, compute_entropy=True)
    torch.testing.assert_close(scored, log_probs, rtol=1e-5, atol=1e-5)
    assert ((entropy > 0) & (entropy <= math.log(256) + 1e-5)).all()


# ---------------------------------------------------------------- GIPO post-training on Meta-World images


def _trainer(path, tmp_path, **overrides):
    model, processor = load_fp32(path)
    settings = dict(
        output_dir=str(tmp_path), use_cpu=True, per_device_train_batch_size=2, num_generations=2, max_steps=2,
        learning_rate=1e-3, bf16=False, report_to="none", logging_steps=1, num_iterations=2, episode_horizon=3,
        max_completion_length=4, save_strategy="no", seed=0, unnorm_key="metaworld",
    )  # fmt: skip
    settings.update(overrides)
    return VLAGIPOTrainer(model, processor, VLAGIPOConfig(**settings), goal_dataset([0, 1, 2, 3]))


def test_gipo_post_training_steps_on_the_published_format(published_vla, tmp_path):
    trainer = _trainer(published_vla, tmp_path)
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    trainer.train()
    logs = [h for h in trainer.state.log_history if "loss" in h]
    assert len(logs) == 2 and all(math.isfinite(h["loss"]) for h in logs)
    assert logs[0]["stale/log_ratio_abs_mean"] < 1e-4  # acting and scoring use the same categorical
    assert logs[1]["stale/log_ratio_abs_mean"] > 1e-4 and "gipo/trust_weight_mean" in logs[1]
    changed = {n.split(".")[0] + "." + n.split(".")[1] for n, p in trainer.model.named_parameters()
               if not torch.equal(before[n], p)}  # fmt: skip
    assert {"vision_backbone.featurizer", "vision_backbone.fused_featurizer", "projector.fc1",
            "language_model.lm_head"} <= changed  # fmt: skip
    trainer.model.save_pretrained(tmp_path / "after")  # the post-trained policy, in the published layout again
    reloaded = load_openvla(tmp_path / "after", dtype=torch.float32)
    inputs = OpenVLAProcessor.from_pretrained(published_vla)(images(1), "reach the goal")
    with torch.no_grad():
        torch.testing.assert_close(reloaded(**inputs).logits, trainer.model.eval()(**inputs).logits)


def test_trainer_rejects_a_policy_whose_actions_do_not_fit_metaworld(published_vla, tmp_path):
    with pytest.raises(ValueError, match="7 dimensions"):
        _trainer(published_vla, tmp_path, unnorm_key="bridge_orig")


@pytest.mark.gpu
def test_published_format_post_trains_on_cuda_in_bf16(published_vla, tmp_path):
    model = load_openvla(published_vla, dtype=torch.bfloat16, device="cuda")
    processor = OpenVLAProcessor.from_pretrained(published_vla)
    config = VLAGIPOConfig(output_dir=str(tmp_path), per_device_train_batch_size=2, num_generations=2, max_steps=2,
                           learning_rate=1e-4, bf16=True, report_to="none", logging_steps=1, num_iterations=2,
                           episode_horizon=3, save_strategy="no", unnorm_key="metaworld")  # fmt: skip
    trainer = VLAGIPOTrainer(model, processor, config, goal_dataset([0, 1]))
    trainer.train()
    assert next(trainer.model.parameters()).is_cuda
    assert all(math.isfinite(h["loss"]) for h in trainer.state.log_history if "loss" in h)


# ---------------------------------------------------------------- the real OpenVLA-7B (GPU machine with the weights)

OPENVLA_7B = os.environ.get("OPENVLA_7B_PATH")


@pytest.mark.gpu
@pytest.mark.skipif(not OPENVLA_7B, reason="set OPENVLA_7B_PATH to a local openvla/openvla-7b folder")
def test_real_openvla_7b_loads_and_puts_its_mass_on_action_tokens():
    """Checks only the real weights can make: full-size shapes, the tokenizer's ids, a trained action head."""
    from gipo_plugins.metaworld.pixels import MetaWorldImageEnv

    model = load_openvla(OPENVLA_7B, dtype=torch.bfloat16, device="cuda")
    processor = OpenVLAProcessor.from_pretrained(OPENVLA_7B)
    assert [(d.hidden_size, d.depth, d.mlp_size) for d in model.tower_dims] == [(1024, 24, 4096), (1152, 27, 4304)]
    assert model.config.text_config.vocab_size == 32064 and 7.4e9 < sum(p.numel() for p in model.parameters()) < 7.7e9
    assert model.action_token_ids[0] == 31999 and model.action_token_ids[-1] == 31744
    env = MetaWorldImageEnv("reach-v3", image_size=224)
    inputs = {k: v.cuda() for k, v in processor(env.reset(0)["image"], "reach the goal").items()}
    env.close()
    assert inputs["input_ids"][0, 0] == 1 and inputs["input_ids"][0, -1] == 29871
    with torch.no_grad():
        probs = model(**inputs).logits[0, -1].float().softmax(-1)
    assert probs[model.action_token_ids.cuda()].sum() > 0.5  # a wrong remap spreads the mass over the vocabulary
    action = model.predict_action(inputs, unnorm_key="bridge_orig")
    stats = model.get_action_stats("bridge_orig")
    assert action.shape == (1, 7)
    inside = (action[0] >= np.array(stats["q01"]) - 1e-3) & (action[0] <= np.array(stats["q99"]) + 1e-3)
    assert inside[np.array(stats["mask"])].all()
    reference = os.environ.get("OPENVLA_7B_REFERENCE")  # logits of the remote code on the same inputs (see docs)
    if reference:
        saved = np.load(reference)
        ours = model(torch.as_tensor(saved["input_ids"]).cuda(), None,
                     torch.as_tensor(saved["pixel_values"]).cuda()).logits[0, -1].float().cpu()  # fmt: skip
        assert ours.argmax() == int(np.argmax(saved["logits_last"]))
        torch.testing.assert_close(ours, torch.as_tensor(saved["logits_last"]).float(), rtol=0.05, atol=0.5)
