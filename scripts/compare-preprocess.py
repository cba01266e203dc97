#!/usr/bin/env python3
"""Compare ptsel's preprocessing with torchvision's evaluation transform, computed here with PIL
and NumPy exactly as torchvision does for PIL images (Resize(256) bilinear with antialias,
CenterCrop(224), ToTensor, Normalize). Needs Pillow and NumPy, not PyTorch.

Usage: compare-preprocess.py DIR IDS.txt PIXELS.npy [RESIZE CROP]
where PIXELS.npy comes from `ptsel embed --model pass.pt` (examples/passthrough.rs).
Prints the largest difference and the share of values that differ, in 8-bit levels.
"""
import sys

import numpy as np
from PIL import Image

MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)[:, None, None]
STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)[:, None, None]


def torchvision_eval(path, resize, crop):
    img = Image.open(path).convert("RGB")
    w, h = img.size
    short, long = (w, h) if w <= h else (h, w)
    new_long = int(resize * long / short)
    size = (resize, new_long) if w <= h else (new_long, resize)
    if (w, h) != size:
        img = img.resize(size, Image.BILINEAR)
    w, h = img.size
    top, left = int(round((h - crop) / 2.0)), int(round((w - crop) / 2.0))
    img = img.crop((left, top, left + crop, top + crop))
    x = np.asarray(img, dtype=np.float32).transpose(2, 0, 1) / np.float32(255)
    return (x - MEAN) / STD


def main():
    root, ids_path, pixels_path = sys.argv[1:4]
    resize, crop = (int(a) for a in (sys.argv[4:6] if len(sys.argv) > 5 else (256, 224)))
    ids = open(ids_path).read().splitlines()
    ours = np.load(pixels_path).reshape(len(ids), 3, crop, crop)
    levels = np.zeros(0)
    for i, image_id in enumerate(ids):
        ref = torchvision_eval(f"{root}/{image_id}", resize, crop)
        diff = np.abs(ours[i] - ref) * STD * 255
        levels = np.concatenate([levels, diff.ravel()])
    print(f"{len(ids)} images: max difference {levels.max():.2f} levels, mean {levels.mean():.4f}, "
          f"{(levels > 0.5).mean() * 100:.2f}% of values differ by >= 1 level, "
          f"{(levels > 1.5).mean() * 100:.3f}% by >= 2")


if __name__ == "__main__":
    main()
