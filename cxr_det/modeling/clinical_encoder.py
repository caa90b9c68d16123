"""Clinical encoder: per-image clinical features -> one vector for the fusion layers.

The inputs are :class:`~cxr_det.data.clinical.features.ClinicalFeaturizer`'s arrays:
normalised numeric values (imputed values 0), their 0/1 missing indicators, and category
indices (0 = unknown). Numeric values and indicators are concatenated with one learned
embedding per categorical feature and passed through an MLP.
"""
import logging
from typing import Sequence

import torch
from torch import nn

__all__ = ["ClinicalEncoder"]

logger = logging.getLogger(__name__)

DEFAULT_CATEGORICAL_SIZE = 8


class ClinicalEncoder(nn.Module):
    """(numeric, missing, categorical) -> MLP -> vector of ``hidden_dims[-1]`` elements.

    Args:
        num_numeric: number of numeric features ``n``.
        categorical_sizes: embedding table size of each categorical feature (index 0 = unknown).
        embed_dim: size of each categorical embedding.
        hidden_dims: widths of the MLP's layers (each Linear + ReLU + Dropout, He-initialised);
            at least one.
        dropout: dropout probability after each layer.
    """

    def __init__(self, num_numeric: int, categorical_sizes: Sequence[int], embed_dim: int = 8,
                 hidden_dims: Sequence[int] = (64, 64), dropout: float = 0.0):
        super().__init__()
        if not hidden_dims:
            raise ValueError("CXR.FUSION.HIDDEN_DIMS must list at least one layer width")
        if num_numeric == 0 and not categorical_sizes:
            raise ValueError("the clinical encoder has no input: CXR.CLINICAL.NUMERIC and CATEGORICAL are empty")
        self.num_numeric = int(num_numeric)
        self.categorical_sizes = [int(s) for s in categorical_sizes]
        self.embeddings = nn.ModuleList(nn.Embedding(size, embed_dim) for size in self.categorical_sizes)
        layers, width = [], 2 * self.num_numeric + embed_dim * len(self.categorical_sizes)
        for out in hidden_dims:
            layers += [nn.Linear(width, out), nn.ReLU(inplace=True), nn.Dropout(dropout)]
            width = out
        self.mlp = nn.Sequential(*layers)
        self.output_dim = width
        for layer in self.mlp:
            if isinstance(layer, nn.Linear):
                # He init keeps the activations' scale through the ReLU layers. PyTorch's default
                # init shrinks it roughly 2.5x per layer; the fusion layers then see a vector
                # too small to learn from within a short schedule.
                nn.init.kaiming_normal_(layer.weight, nonlinearity="relu")
                nn.init.zeros_(layer.bias)

    @classmethod
    def from_config(cls, cfg):
        """An encoder for ``cfg.CXR.CLINICAL`` features and ``cfg.CXR.FUSION`` sizes."""
        num_categorical = len(cfg.CXR.CLINICAL.CATEGORICAL)
        sizes = list(cfg.CXR.CLINICAL.CATEGORICAL_SIZES)
        if not sizes and num_categorical:
            logger.warning(
                "CXR.CLINICAL.CATEGORICAL_SIZES is empty: using %d embeddings per categorical feature %s",
                DEFAULT_CATEGORICAL_SIZE, list(cfg.CXR.CLINICAL.CATEGORICAL),
            )
            sizes = [DEFAULT_CATEGORICAL_SIZE] * num_categorical
        if len(sizes) != num_categorical:
            raise ValueError(
                f"CXR.CLINICAL.CATEGORICAL_SIZES has {len(sizes)} entries but CXR.CLINICAL.CATEGORICAL "
                f"has {num_categorical} features"
            )
        fusion = cfg.CXR.FUSION
        return cls(len(cfg.CXR.CLINICAL.NUMERIC), sizes, fusion.EMBED_DIM, fusion.HIDDEN_DIMS, fusion.DROPOUT)

    @property
    def num_categorical(self) -> int:
        return len(self.categorical_sizes)

    def forward(self, numeric: torch.Tensor, missing: torch.Tensor, categorical: torch.Tensor) -> torch.Tensor:
        """float (N, n), float (N, n), int64 (N, m) -> float (N, output_dim)."""
        parts = [numeric, missing]
        if self.embeddings:
            self._check_categories(categorical)
            parts += [emb(categorical[:, j]) for j, emb in enumerate(self.embeddings)]
        return self.mlp(torch.cat(parts, dim=1))

    def _check_categories(self, categorical):
        """A clear error instead of an embedding lookup out of range (a device assert on GPU)."""
        if not categorical.numel():
            return
        sizes = categorical.new_tensor(self.categorical_sizes)
        if bool(((categorical < 0) | (categorical >= sizes)).any()):
            raise ValueError(
                f"clinical category indices {categorical.tolist()} outside the embedding tables of sizes "
                f"{self.categorical_sizes}: CXR.CLINICAL.CATEGORICAL_SIZES must match the featurizer's vocabularies"
            )
