"""OpenVLA's processor (`OpenVLAProcessor`): images + instruction → the model's inputs, without remote code.

It reads a published checkpoint's `preprocessor_config.json` (two image normalisations,
channel-stacked) and its Llama tokenizer (`<PAD>` added as id 32000).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from transformers import PreTrainedTokenizerFast

from gipo_plugins.vla.actions import PROMPT
from gipo_plugins.vla.configuration_openvla import EMPTY_TOKEN

PREPROCESSOR_FILE = "preprocessor_config.json"


class OpenVLAProcessor:
    """OpenVLA's processor: images + instruction → `input_ids`, `attention_mask`, `pixel_values`.

    Reads `preprocessor_config.json` (`input_sizes`, `tvf_normalize_params` or `means`/`stds`,
    `use_fused_vision_backbone`) and the tokenizer of a published checkpoint. Images are uint8
    `[B, H, W, 3]` (or one `[H, W, 3]`); images of another size than the model's are resized as
    OpenVLA's processor does (`"resize-naive"`: torchvision's `resize` of the PIL image, i.e.
    Pillow's `Image.resize((S, S), Image.BICUBIC)` on the uint8 image, aspect ratio not kept), so the
    pixel values equal OpenVLA's; then they are scaled to $[0, 1]$, normalised once per tower and
    stacked on the channel axis: `[B, 3 × towers, S, S]`. Text is
    `[BOS] + tokens("In: What action should the robot take to {instruction}?\nOut:") + ["▁"]`,
    left-padded with `<PAD>`; the action tokens follow (`predict_action` appends the `"▁"` to
    prompts from OpenVLA's own processor, which lack it). OpenVLA takes no proprioception
    (`state_dim = 0`).

    Args:
        tokenizer: the checkpoint's tokenizer (`PreTrainedTokenizerFast`).
        preprocessor_config: the parsed `preprocessor_config.json`.

    Raises:
        ValueError: a configuration without image sizes or normalisations, or a tokenizer without
            BOS, `<PAD>` or the `"▁"` token.
    """

    state_dim = 0

    def __init__(self, tokenizer: PreTrainedTokenizerFast, preprocessor_config: dict):
        self.tokenizer, self.preprocessor_config = tokenizer, dict(preprocessor_config)
        sizes = preprocessor_config.get("input_sizes")
        if not sizes:
            raise ValueError("preprocessor_config needs input_sizes")
        if preprocessor_config.get("tvf_normalize_params"):
            norms = [(p["mean"], p["std"]) for p in preprocessor_config["tvf_normalize_params"]]
        elif preprocessor_config.get("means") and preprocessor_config.get("stds"):
            norms = list(zip(preprocessor_config["means"], preprocessor_config["stds"], strict=True))
        else:
            raise ValueError("preprocessor_config needs tvf_normalize_params or means and stds")
        if len(norms) != len(sizes) or len({s[-1] for s in sizes}) != 1:
            raise ValueError(f"preprocessor_config: one square size and normalisation per tower, got {sizes}")
        self.image_size = int(sizes[0][-1])
        self.mean = torch.tensor([m for m, _ in norms], dtype=torch.float32)[..., None, None]  # [towers, 3, 1, 1]
        self.std = torch.tensor([s for _, s in norms], dtype=torch.float32)[..., None, None]
        self.empty_token_id = tokenizer.convert_tokens_to_ids(EMPTY_TOKEN)
        if tokenizer.bos_token_id is None or tokenizer.pad_token_id is None or self.empty_token_id in (
            None, tokenizer.unk_token_id):  # fmt: skip
            raise ValueError(f"the tokenizer needs a BOS token, a pad token and the {EMPTY_TOKEN!r} token")

    def pixel_values(self, images: np.ndarray | Tensor) -> Tensor:
        """uint8 images `[B, H, W, 3]` → channel-stacked, per-tower normalised `[B, 3 × towers, S, S]`."""
        images = torch.as_tensor(np.asarray(images))
        images = images[None] if images.ndim == 3 else images
        if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != torch.uint8:
            raise ValueError(f"images must be uint8 [B, H, W, 3], got {tuple(images.shape)} {images.dtype}")
        size = self.image_size
        if tuple(images.shape[1:3]) != (size, size):  # OpenVLA: PIL's bicubic on the uint8 image, both towers alike
            from PIL import Image  # Pillow (with Meta-World's imageio): needed only to resize

            images = torch.from_numpy(np.stack([
                np.asarray(Image.fromarray(image).resize((size, size), Image.Resampling.BICUBIC))
                for image in images.cpu().numpy()
            ]))  # fmt: skip
        pixels = images.permute(0, 3, 1, 2).float() / 255.0
        return ((pixels[:, None] - self.mean) / self.std).flatten(1, 2)

    def __call__(
        self,
        images: np.ndarray | Tensor,
        instructions: str | Sequence[str],
        states: np.ndarray | Tensor | None = None,
        unnorm_key: str | None = None,
    ) -> dict[str, Tensor]:
        if states is not None:
            raise ValueError("OpenVLA takes no proprioception: states must be None (state_dim = 0)")
        pixel_values = self.pixel_values(images)
        batch = pixel_values.shape[0]
        instructions = [instructions] * batch if isinstance(instructions, str) else list(instructions)
        if len(instructions) != batch:
            raise ValueError(f"{len(instructions)} instructions for {batch} images")
        rows = [
            [self.tokenizer.bos_token_id,
             *self.tokenizer(PROMPT.format(instruction=i), add_special_tokens=False)["input_ids"],
             self.empty_token_id]
            for i in instructions
        ]  # fmt: skip
        width = max(map(len, rows))
        pad = self.tokenizer.pad_token_id
        input_ids = torch.tensor([[pad] * (width - len(r)) + r for r in rows])
        attention_mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows])
        return {"input_ids": input_ids, "attention_mask": attention_mask, "pixel_values": pixel_values}

    def save_pretrained(self, path: str | Path) -> None:
        """Write the tokenizer and `preprocessor_config.json` as read, less any `auto_map` (no remote code here)."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        self.tokenizer.save_pretrained(path)
        tokenizer_config = path / "tokenizer_config.json"  # OpenVLA's also names the remote AutoProcessor
        if tokenizer_config.exists() and "auto_map" in (saved := json.loads(tokenizer_config.read_text())):
            tokenizer_config.write_text(json.dumps({k: v for k, v in saved.items() if k != "auto_map"}, indent=2))
        config = {k: v for k, v in self.preprocessor_config.items() if k != "auto_map"}
        (path / PREPROCESSOR_FILE).write_text(json.dumps(config, indent=2))

    @classmethod
    def from_pretrained(cls, path: str | Path) -> OpenVLAProcessor:
        """Read a published checkpoint's `preprocessor_config.json` and tokenizer (no remote code)."""
        path = Path(path)
        if not (path / PREPROCESSOR_FILE).exists():
            raise ValueError(f"no {PREPROCESSOR_FILE} in {path}")
        return cls(PreTrainedTokenizerFast.from_pretrained(path), json.loads((path / PREPROCESSOR_FILE).read_text()))
