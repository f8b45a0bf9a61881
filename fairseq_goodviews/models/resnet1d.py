"""Model ``resnet1d``: the 1-D ResNet-18 encoder of the Good Views paper (its appendix A.2).

Stem Conv1d(k15, s2) -> BN -> ReLU -> MaxPool(k3, s2); BasicBlocks with ``layers`` blocks per
stage, widths ``base_width * (1, 2, 4, 8)``, strides 1/2/2/2, kernel 7; global average pooling;
Linear -> ``embedding_dim``; an optional MLP projection head used only by the contrastive loss.
"""

from dataclasses import dataclass, field
from typing import Dict, List

import torch
import torch.nn as nn
from fairseq.dataclass import FairseqDataclass
from fairseq.models import BaseFairseqModel, register_model

from fairseq_goodviews.models.compile import HELP as COMPILE_HELP
from fairseq_goodviews.models.compile import compile_modules


@dataclass
class Resnet1dConfig(FairseqDataclass):
    in_leads: int = field(default=12, metadata={"help": "input channels (leads; absent leads are zero-filled)"})
    base_width: int = field(default=64, metadata={"help": "channels of the first stage (paper: 64)"})
    layers: List[int] = field(
        default_factory=lambda: [2, 2, 2, 2], metadata={"help": "BasicBlocks per stage (ResNet-18: 2,2,2,2)"}
    )
    kernel_size: int = field(default=7, metadata={"help": "kernel of the residual convolutions"})
    stem_kernel_size: int = field(default=15, metadata={"help": "kernel of the stem convolution"})
    embedding_dim: int = field(default=128, metadata={"help": "size of the encoder output (paper: 128)"})
    projection_dim: int = field(default=0, metadata={"help": "output of an MLP projection head; 0 = none (paper)"})
    norm: str = field(
        default="batch",
        metadata={
            "help": "'batch' (paper) or 'group' (GroupNorm: no batch statistics, so a batch split "
            "across workers gives exactly the single-process result)"
        },
    )
    compile_encoder: bool = field(default=False, metadata={"help": COMPILE_HELP})


def norm_layer(kind: str, channels: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm1d(channels)
    if kind == "group":
        return nn.GroupNorm(min(8, channels), channels)
    raise ValueError(f"unknown norm {kind!r}; expected 'batch' or 'group'")


class BasicBlock1d(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, stride: int, kernel_size: int, norm: str):
        super().__init__()
        padding = kernel_size // 2
        self.conv1 = nn.Conv1d(in_channels, out_channels, kernel_size, stride, padding, bias=False)
        self.bn1 = norm_layer(norm, out_channels)
        self.conv2 = nn.Conv1d(out_channels, out_channels, kernel_size, 1, padding, bias=False)
        self.bn2 = norm_layer(norm, out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv1d(in_channels, out_channels, 1, stride, bias=False), norm_layer(norm, out_channels)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


class Resnet1dEncoder(nn.Module):
    """[B, leads, T] -> [B, embedding_dim]."""

    def __init__(self, cfg: Resnet1dConfig):
        super().__init__()
        width = cfg.base_width
        self.stem = nn.Sequential(
            nn.Conv1d(cfg.in_leads, width, cfg.stem_kernel_size, 2, cfg.stem_kernel_size // 2, bias=False),
            norm_layer(cfg.norm, width),
            nn.ReLU(inplace=True),
            nn.MaxPool1d(3, 2, 1),
        )
        stages, in_channels = [], width
        for stage, blocks in enumerate(cfg.layers):
            out_channels = width * 2**stage
            for block in range(blocks):
                stride = 2 if stage > 0 and block == 0 else 1
                stages.append(BasicBlock1d(in_channels, out_channels, stride, cfg.kernel_size, cfg.norm))
                in_channels = out_channels
        self.stages = nn.Sequential(*stages)
        self.fc = nn.Linear(in_channels, cfg.embedding_dim)
        self.embedding_dim = cfg.embedding_dim

    def forward(self, source: torch.Tensor) -> torch.Tensor:
        features = self.stages(self.stem(source))
        return self.fc(features.mean(dim=-1))


def allow_tf32() -> None:
    """Let float32 matmuls and convolutions run on TF32 tensor cores where the GPU has them (Ampere and newer)."""
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True


@register_model("resnet1d", dataclass=Resnet1dConfig)
class Resnet1dModel(BaseFairseqModel):
    """Encoder plus optional projection head; ``forward`` returns ``{"embedding": ...}`` for the loss."""

    def __init__(self, cfg: Resnet1dConfig):
        super().__init__()
        self.cfg = cfg
        self.encoder = Resnet1dEncoder(cfg)
        self.projection = nn.Identity()
        if cfg.projection_dim > 0:
            self.projection = nn.Sequential(
                nn.Linear(cfg.embedding_dim, cfg.embedding_dim),
                nn.ReLU(inplace=True),
                nn.Linear(cfg.embedding_dim, cfg.projection_dim),
            )

    @classmethod
    def build_model(cls, cfg: Resnet1dConfig, task=None) -> "Resnet1dModel":
        """The model; its encoder compiled (at its first call) when ``cfg.compile_encoder``."""
        allow_tf32()
        model = cls(cfg)
        if getattr(cfg, "compile_encoder", False):  # configs saved before the option lack it
            compile_modules([model.encoder])
        return model

    def encode(self, source: torch.Tensor) -> torch.Tensor:
        """The representation used downstream (before the projection head)."""
        return self.encoder(source)

    def forward(self, source: torch.Tensor, **kwargs) -> Dict[str, torch.Tensor]:
        return {"embedding": self.projection(self.encoder(source))}
