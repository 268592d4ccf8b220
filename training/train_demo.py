"""Train the demo HRNet-OCR on procedural street scenes, on CPU, in under 30 minutes.

    python -m training.train_demo --out ocr_deploy/assets/demo_street_w18s1.pth

W18-small-v1 backbone, OCR MID/KEY 128/64, the 19 Cityscapes classes (the generator draws 10 of
them). Loss as the reference trains HRNet-OCR: cross-entropy on the aux (soft object regions)
and the OCR output, both upsampled to the label size with align_corners=True, weighted 0.4 and
1.0. Every scene is new: training seeds start at TRAIN_SEED_START, held-out evaluation uses
seeds below it. The checkpoint is saved in the reference's release layout ('model.' keys plus
'loss.criterion.weight'), so the demo loads through exactly the path a user's checkpoint takes.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from exporters.checkpoint_files import save_release_checkpoint
from exporters.hrnet_ocr import HRNetOCR
from exporters.variants import OcrConfig
from ocr_deploy.meta import InputSpec
from ocr_deploy.preprocess import normalize_frames
from ocr_deploy.staging import threaded_map
from training.scenes import CLASS_IDS, render_scene

TRAIN_SEED_START = 1_000_000
NUM_CLASSES = 19
AUX_WEIGHT, MAIN_WEIGHT = 0.4, 1.0


@dataclass(frozen=True)
class TrainConfig:
    steps: int = 1250
    batch: int = 8
    render_size: tuple[int, int] = (256, 512)  # the demo's own resolution
    crop_size: tuple[int, int] = (192, 384)  # random crops keep object scale, cost 56 %
    learning_rate: float = 2e-3
    weight_decay: float = 1e-4
    warmup_steps: int = 50
    seed: int = 0
    threads: int = 2


def demo_config() -> OcrConfig:
    return OcrConfig.from_variant("w18-small-v1", num_classes=NUM_CLASSES, mid_channels=128,
                                  key_channels=64, align_corners=True)


def to_tensor(images_bgr: np.ndarray) -> torch.Tensor:
    """uint8 NHWC BGR -> float32 NCHW RGB normalised, exactly as the exported graph does."""
    return torch.from_numpy(normalize_frames(images_bgr, InputSpec()))


def _batch(step: int, config: TrainConfig) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng([config.seed, step])
    images, labels = [], []
    crop_h, crop_w = config.crop_size
    for index in range(config.batch):
        seed = TRAIN_SEED_START + step * config.batch + index
        image, label = render_scene(seed, height=config.render_size[0], width=config.render_size[1])
        top = int(rng.integers(0, image.shape[0] - crop_h + 1))
        left = int(rng.integers(0, image.shape[1] - crop_w + 1))
        image, label = image[top:top + crop_h, left:left + crop_w], label[top:top + crop_h, left:left + crop_w]
        if rng.random() < 0.5:  # the generator's classes have no left/right distinction
            image, label = image[:, ::-1], label[:, ::-1]
        images.append(image)
        labels.append(label)
    return np.stack(images), np.stack(labels)


def batches(config: TrainConfig) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Scenes are rendered in a background thread while the previous step trains."""

    def render(step: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        images, labels = _batch(step, config)
        yield to_tensor(images), torch.from_numpy(labels.astype(np.int64))

    return threaded_map(range(config.steps), render, maxsize=3, name="scenes")


def class_weights() -> torch.Tensor:
    """Inverse-sqrt-frequency weights for the drawn classes (measured on 64 scenes), mean 1;
    rare thin classes (signs, people, poles) would otherwise barely register in the loss."""
    counts = np.zeros(NUM_CLASSES)
    for seed in range(TRAIN_SEED_START - 64, TRAIN_SEED_START):
        counts += np.bincount(render_scene(seed, height=128, width=256)[1].ravel(),
                              minlength=NUM_CLASSES)[:NUM_CLASSES]
    drawn = np.array(sorted(CLASS_IDS.values()))
    weights = np.zeros(NUM_CLASSES)
    weights[drawn] = 1.0 / np.sqrt(np.maximum(counts[drawn] / counts.sum(), 1e-4))
    weights[drawn] /= weights[drawn].mean()
    return torch.tensor(weights, dtype=torch.float32)


def learning_rate(step: int, config: TrainConfig) -> float:
    """Linear warm-up, then the reference's poly(0.9) decay."""
    if step < config.warmup_steps:
        return config.learning_rate * (step + 1) / config.warmup_steps
    progress = (step - config.warmup_steps) / max(1, config.steps - config.warmup_steps)
    return config.learning_rate * (1.0 - progress) ** 0.9


def loss_fn(outputs: list[torch.Tensor], labels: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    total = torch.zeros(())
    for logits, weight in zip(outputs, (AUX_WEIGHT, MAIN_WEIGHT), strict=True):
        upsampled = F.interpolate(logits, size=labels.shape[-2:], mode="bilinear", align_corners=True)
        total = total + weight * F.cross_entropy(upsampled, labels, weight=weights, ignore_index=255)
    return total


def train(config: TrainConfig, *, log=print) -> tuple[HRNetOCR, torch.Tensor, float]:
    torch.manual_seed(config.seed)
    torch.set_num_threads(config.threads)
    model = HRNetOCR(demo_config())
    weights = class_weights()
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.learning_rate,
                                  weight_decay=config.weight_decay)
    model.train()
    start = time.perf_counter()
    running = 0.0
    for step, (images, labels) in enumerate(batches(config)):
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(step, config)
        loss = loss_fn(model(images), labels, weights)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        running = 0.98 * running + 0.02 * loss.item() if step else loss.item()
        if step % 50 == 0 or step == config.steps - 1:
            elapsed = time.perf_counter() - start
            eta = elapsed / (step + 1) * (config.steps - step - 1)
            log(f"step {step:5d}/{config.steps}  loss {running:.3f}  lr {learning_rate(step, config):.2e}"
                f"  {elapsed / 60:5.1f} min, ~{eta / 60:.1f} min left")
    return model.eval(), weights, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--steps", type=int, default=TrainConfig.steps)
    parser.add_argument("--seed", type=int, default=TrainConfig.seed)
    args = parser.parse_args()
    config = TrainConfig(steps=args.steps, seed=args.seed)
    print(f"training {demo_config().variant} MID/KEY 128/64 for {config.steps} steps of "
          f"{config.batch} scenes ({config.crop_size[0]}x{config.crop_size[1]} crops)", flush=True)
    model, weights, seconds = train(config, log=lambda line: print(line, flush=True))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    save_release_checkpoint(model.state_dict(), args.out, loss_weights=weights)
    print(f"trained in {seconds / 60:.1f} min; saved {args.out} "
          f"({args.out.stat().st_size / 1e6:.1f} MB)")


if __name__ == "__main__":
    main()
