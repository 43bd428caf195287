"""Multi-crop augmentation (DINO): 2 global crops and N local crops of one image.

Global crop 1: random resized crop, flip, colour jitter (p 0.8), grayscale (p 0.2), blur (always).
Global crop 2: the same, blur p 0.1, solarize p 0.2. Local crops: smaller scale and size, blur p 0.5.
Every random choice comes from the `random.Random` passed in, never from global state, so a sample's
crops depend only on (seed, step, position in batch): a run resumed from a checkpoint, or read by a
different number of loader workers' timing, sees the same pixels.
"""

from __future__ import annotations

import math
import random

import torch
from PIL import Image, ImageEnhance, ImageFilter, ImageOps

MEAN = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)


def crop_box(rng: random.Random, width: int, height: int, scale: tuple[float, float],
             ratio: tuple[float, float] = (3 / 4, 4 / 3)) -> tuple[int, int, int, int]:
    """A random (left, top, right, bottom) covering `scale` of the area with aspect in `ratio`
    (torchvision's RandomResizedCrop rule; a centre crop after 10 misses)."""
    area = width * height
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target = area * rng.uniform(*scale)
        aspect = math.exp(rng.uniform(*log_ratio))
        w = round(math.sqrt(target * aspect))
        h = round(math.sqrt(target / aspect))
        if 0 < w <= width and 0 < h <= height:
            left, top = rng.randint(0, width - w), rng.randint(0, height - h)
            return left, top, left + w, top + h
    side = min(width, height)
    left, top = (width - side) // 2, (height - side) // 2
    return left, top, left + side, top + side


def _jitter(image: Image.Image, rng: random.Random) -> Image.Image:
    """Brightness 0.4, contrast 0.4, saturation 0.2, hue 0.1, in a random order."""
    ops = [0, 1, 2, 3]
    rng.shuffle(ops)
    for op in ops:
        if op == 0:
            image = ImageEnhance.Brightness(image).enhance(rng.uniform(0.6, 1.4))
        elif op == 1:
            image = ImageEnhance.Contrast(image).enhance(rng.uniform(0.6, 1.4))
        elif op == 2:
            image = ImageEnhance.Color(image).enhance(rng.uniform(0.8, 1.2))
        else:
            shift = round(rng.uniform(-0.1, 0.1) * 255)
            if shift:
                h, s, v = image.convert("HSV").split()
                h = h.point(lambda x, k=shift: (x + k) % 256)
                image = Image.merge("HSV", (h, s, v)).convert("RGB")
    return image


def view(image: Image.Image, rng: random.Random, size: int, scale: tuple[float, float], blur_p: float,
         solarize_p: float) -> Image.Image:
    """One augmented crop of an RGB image, `size` x `size`."""
    box = crop_box(rng, image.width, image.height, scale)
    out = image.resize((size, size), Image.Resampling.BICUBIC, box=box)
    if rng.random() < 0.5:
        out = ImageOps.mirror(out)
    if rng.random() < 0.8:
        out = _jitter(out, rng)
    if rng.random() < 0.2:
        out = ImageOps.grayscale(out).convert("RGB")
    if rng.random() < blur_p:
        # DINO's sigma range (0.1, 2.0) is for 224-px crops: scale it to this crop size
        out = out.filter(ImageFilter.GaussianBlur(rng.uniform(0.1, 2.0) * size / 224))
    if rng.random() < solarize_p:
        out = ImageOps.solarize(out, 128)
    return out


def to_tensor(image: Image.Image) -> torch.Tensor:
    """RGB PIL image -> normalized float tensor (3, H, W)."""
    data = torch.frombuffer(bytearray(image.tobytes()), dtype=torch.uint8)
    data = data.view(image.height, image.width, 3).permute(2, 0, 1).float().div_(255)
    return (data - MEAN) / STD


class MultiCrop:
    """Callable: (image, rng) -> (global crops, local crops) as lists of tensors."""

    def __init__(self, image_size: int, local_size: int, local_crops: int, global_scale: tuple[float, float],
                 local_scale: tuple[float, float]) -> None:
        self.image_size, self.local_size, self.local_crops = image_size, local_size, local_crops
        self.global_scale, self.local_scale = global_scale, local_scale

    def __call__(self, image: Image.Image, rng: random.Random) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        g, gs = self.image_size, self.global_scale
        globals_ = [view(image, rng, g, gs, 1.0, 0.0), view(image, rng, g, gs, 0.1, 0.2)]
        locals_ = [view(image, rng, self.local_size, self.local_scale, 0.5, 0.0) for _ in range(self.local_crops)]
        return [to_tensor(x) for x in globals_], [to_tensor(x) for x in locals_]


def eval_tensor(image: Image.Image, size: int) -> torch.Tensor:
    """The evaluation view: the whole image resized to size x size (no crop: probe images are small)."""
    return to_tensor(image.convert("RGB").resize((size, size), Image.Resampling.BICUBIC))
