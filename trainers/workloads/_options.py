"""Options of the built-in workloads: plain pydantic, so specs validate without torch.

Each model forbids unknown keys and gives every field a default (the reference setting of the
workload's paper); the registry adds CPU- and GPU-sized presets on top.

``validation_size`` (the workloads that hold a validation split out of their training data)
is a count when it is an int and a fraction when it is a float; :func:`validation_count` turns
it into a count, here for the options and in ``stratified_split`` at load time.

Example:
    >>> validation_count(0.1, 800), validation_count(50, 800)
    (80, 50)
"""

from __future__ import annotations

from typing import Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictFloat,
    StrictInt,
    ValidationInfo,
    field_validator,
    model_validator,
)

__all__ = [
    "CIFAR_TRAIN_IMAGES",
    "MNIST1D_TRAIN_SPLIT",
    "LSTMPTBOptions",
    "LSTMWikiText2Options",
    "MNIST1DOptions",
    "ResNetCIFAROptions",
    "TransformerMTOptions",
    "check_validation_size",
    "cifar_train_size",
    "mnist1d_train_size",
    "validation_count",
]

MNIST1D_TRAIN_SPLIT = 0.8
"""The share of MNIST-1D's samples that are training data: ``mnist1d.data.make_dataset`` cuts
``x[:int(num_samples * train_split)]`` for training and the rest for testing, and its default
``train_split`` is 0.8 (mnist1d 0.0.2; ``generate_mnist1d`` passes it explicitly)."""


CIFAR_TRAIN_IMAGES = 50_000
"""Images of the CIFAR-10 and CIFAR-100 training batches (the test batch apart)."""
# resnet_cifar.default_validation_size's rule (that module imports torch): 5,000 images, at
# most a tenth of the training images.
_CIFAR_DEFAULT_VALIDATION = min(5000, max(1, CIFAR_TRAIN_IMAGES // 10))


def check_validation_size(validation_size: int | float) -> int | float:
    """``validation_size`` if it is a count >= 1 or a fraction in (0, 1), else ValueError."""
    if isinstance(validation_size, bool) or not isinstance(validation_size, int | float):
        raise ValueError(
            f"validation_size={validation_size!r} must be a count (int) or a fraction (float)"
        )
    if isinstance(validation_size, int) and validation_size < 1:
        raise ValueError(f"validation_size={validation_size} must be at least 1 sample")
    if isinstance(validation_size, float) and not 0 < validation_size < 1:
        raise ValueError(
            f"validation_size={validation_size} is a fraction and must lie strictly between 0 "
            "and 1 (write a count as an integer, e.g. 5000)"
        )
    return validation_size


def validation_count(validation_size: int | float, num_samples: int) -> int:
    """How many of ``num_samples`` training samples ``validation_size`` holds out.

    A fraction is rounded to the nearest count. ValueError (naming ``validation_size``) when
    that is below one sample or leaves no training data.
    """
    check_validation_size(validation_size)
    if isinstance(validation_size, float):
        count = round(validation_size * num_samples)
        if count < 1:
            raise ValueError(
                f"validation_size={validation_size} of {num_samples} training samples is less "
                "than one sample: use a larger fraction or a count"
            )
    else:
        count = validation_size
    if count >= num_samples:
        raise ValueError(
            f"validation_size={validation_size} leaves no training data: the training part "
            f"has {num_samples} samples; hold out fewer"
        )
    return count


class _Options(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# StrictInt first: 500 stays a count and 0.5 a fraction; True is neither.
_ValidationSize = StrictInt | StrictFloat


def _validation_seed_field() -> int:
    return Field(
        0,
        ge=0,
        lt=2**63,
        description="seeds which samples form the validation split (not the trial's seed)",
    )


class MNIST1DOptions(_Options):
    """MNIST-1D (Greydanus & Kobak, 2020, arXiv:2011.14439): MLP or small 1-D CNN."""

    model: Literal["mlp", "cnn"] = "mlp"
    num_samples: int = Field(
        5000,
        ge=1000,
        le=100_000,
        multiple_of=10,
        description="total; 80% training part (validation is held out of it), 20% test",
    )
    hidden: int = Field(100, gt=0, description="mlp: units of each of the two hidden layers")
    channels: int = Field(25, gt=0, description="cnn: channels of each of the three conv layers")
    seed: int = Field(42, ge=0, lt=2**32, description="seed of the data generator")
    validation_size: _ValidationSize = Field(
        0.1,
        description="held out of the training part, stratified by class: a count (int) or "
        "a fraction of the training part (float in (0, 1))",
    )
    validation_seed: int = _validation_seed_field()
    standardize: bool = Field(
        True,
        description="shift and scale all splits by the training split's mean and std "
        "(two scalars, computed after the validation split is held out)",
    )

    @field_validator("validation_size")
    @classmethod
    def _check_validation_size(
        cls, validation_size: int | float, info: ValidationInfo
    ) -> int | float:
        num_samples = info.data.get("num_samples")  # absent when it failed its own checks
        if num_samples is None:
            return check_validation_size(validation_size)
        validation_count(validation_size, int(num_samples * MNIST1D_TRAIN_SPLIT))
        return validation_size


class ResNetCIFAROptions(_Options):
    """ResNet-20 for CIFAR (He et al., 2016, arXiv:1512.03385, section 4.2)."""

    width_multiplier: float = Field(
        1.0, gt=0, le=16, description="scales the 16/32/64 stage widths"
    )
    shortcut: Literal["identity", "projection"] = Field(
        "identity",
        description="identity: the paper's option A (stride-2 subsampling + zero channel "
        "padding); projection: option B (1x1 conv + BatchNorm) where the shape changes",
    )
    zero_init_residual: bool = Field(
        False, description="zero the last BatchNorm scale of each block (Goyal et al., 2017)"
    )
    validation_size: _ValidationSize | None = Field(
        None,
        description="held out of the training batches, stratified by class: a count (int) or "
        "a fraction (float in (0, 1)); null: 5,000 images, at most 10% of the training set",
    )
    validation_seed: int = _validation_seed_field()

    @field_validator("validation_size")
    @classmethod
    def _check_validation_size(cls, validation_size: int | float | None) -> int | float | None:
        # Whether a count leaves training data depends on the files: checked at load time.
        return None if validation_size is None else check_validation_size(validation_size)


class LSTMPTBOptions(_Options):
    """Word-level LSTM language model (Zaremba et al., 2014, arXiv:1409.2329, 'medium')."""

    embedding_size: int = Field(650, gt=0)
    hidden_size: int = Field(650, gt=0)
    num_layers: int = Field(2, gt=0)
    dropout: float = Field(0.5, ge=0, lt=1)
    bptt: int = Field(35, gt=1, description="tokens per training sample")
    tie_weights: bool = Field(
        True, description="share embedding and softmax weights (Press & Wolf, 2017)"
    )

    @model_validator(mode="after")
    def _check_tying(self) -> LSTMPTBOptions:
        if self.tie_weights and self.embedding_size != self.hidden_size:
            raise ValueError(
                f"tie_weights=true needs embedding_size == hidden_size, got "
                f"{self.embedding_size} and {self.hidden_size}"
            )
        return self


class LSTMWikiText2Options(LSTMPTBOptions):
    """The lstm-ptb model on WikiText-2 (Merity et al., 2016, arXiv:1609.07843): same options."""


class TransformerMTOptions(_Options):
    """Encoder-decoder Transformer (Vaswani et al., 2017, arXiv:1706.03762), Multi30k-sized."""

    d_model: int = Field(512, gt=0)
    num_heads: int = Field(8, gt=0)
    num_layers: int = Field(3, gt=0, description="encoder layers and decoder layers, each")
    ffn_size: int = Field(512, gt=0)
    dropout: float = Field(0.1, ge=0, lt=1)
    max_len: int = Field(
        50, gt=0, description="tokens per sentence (longer ones are cut) and decoding limit"
    )
    min_freq: int = Field(2, gt=0, description="a train token rarer than this becomes <unk>")
    src_lang: str = Field("de", pattern=r"^[a-z]{2}$")
    tgt_lang: str = Field("en", pattern=r"^[a-z]{2}$")
    norm_first: bool = Field(False, description="pre-LayerNorm instead of the paper's post-LN")
    tie_embeddings: bool = Field(
        True, description="share target embedding and output projection weights"
    )

    @model_validator(mode="after")
    def _check(self) -> TransformerMTOptions:
        if self.d_model % self.num_heads:
            raise ValueError(
                f"d_model={self.d_model} is not divisible by num_heads={self.num_heads}"
            )
        if self.src_lang == self.tgt_lang:
            raise ValueError(f"src_lang and tgt_lang are both {self.src_lang!r}")
        return self


def mnist1d_train_size(options: MNIST1DOptions) -> int:
    """Samples in MNIST-1D's training split: the generated training part less validation.

    Example:
        >>> mnist1d_train_size(MNIST1DOptions(num_samples=1000))  # 800 - 80
        720
    """
    part = int(options.num_samples * MNIST1D_TRAIN_SPLIT)
    return part - validation_count(options.validation_size, part)


def cifar_train_size(options: ResNetCIFAROptions) -> int:
    """Images in the CIFAR training split of the full data set: 50,000 less validation.

    Example:
        >>> cifar_train_size(ResNetCIFAROptions())
        45000
        >>> cifar_train_size(ResNetCIFAROptions(validation_size=0.2))
        40000
    """
    size = options.validation_size
    held_out = (
        _CIFAR_DEFAULT_VALIDATION if size is None else validation_count(size, CIFAR_TRAIN_IMAGES)
    )
    return CIFAR_TRAIN_IMAGES - held_out
