"""Options of the built-in workloads: plain pydantic, so specs validate without torch.

Each model forbids unknown keys and gives every field a default (the reference setting of the
workload's paper); the registry adds CPU- and GPU-sized presets on top.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = ["LSTMPTBOptions", "MNIST1DOptions", "ResNetCIFAROptions", "TransformerMTOptions"]


class _Options(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class MNIST1DOptions(_Options):
    """MNIST-1D (Greydanus & Kobak, 2020, arXiv:2011.14439): MLP or small 1-D CNN."""

    model: Literal["mlp", "cnn"] = "mlp"
    num_samples: int = Field(
        5000, ge=1000, le=100_000, multiple_of=10, description="total; 80% train, 20% test"
    )
    hidden: int = Field(100, gt=0, description="mlp: units of each of the two hidden layers")
    channels: int = Field(25, gt=0, description="cnn: channels of each of the three conv layers")
    seed: int = Field(42, ge=0, lt=2**32, description="seed of the data generator")


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
