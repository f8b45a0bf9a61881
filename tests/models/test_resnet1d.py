"""The ResNet-18 1-D encoder of the paper: shapes, configurable size, projection head, any lead count."""
import pytest
import torch
from fairseq.dataclass.utils import merge_with_parent
from omegaconf import OmegaConf

from fairseq_goodviews.models.resnet1d import Resnet1dConfig, Resnet1dModel


def build(**options) -> Resnet1dModel:
    return Resnet1dModel.build_model(merge_with_parent(Resnet1dConfig(), OmegaConf.create(options)))


def test_paper_encoder_maps_12_by_t_records_to_128_dimensions():
    model = build().eval()
    blocks = list(model.encoder.stages)
    assert len(blocks) == 8  # BasicBlocks [2, 2, 2, 2]
    assert [block.conv1.out_channels for block in blocks[::2]] == [64, 128, 256, 512]
    with torch.no_grad():
        for length in (2500, 5000, 777):
            assert model.encode(torch.randn(3, 12, length)).shape == (3, 128)
            assert model(torch.randn(3, 12, length))["embedding"].shape == (3, 128)


@pytest.mark.parametrize("leads", [1, 2, 12])
def test_small_preset_any_lead_count_and_a_projection_head(leads):
    model = build(in_leads=leads, base_width=16, layers=[1, 1, 1, 1], embedding_dim=32, projection_dim=8).eval()
    with torch.no_grad():
        x = torch.randn(4, leads, 1000)
        assert model.encode(x).shape == (4, 32)  # the encoder output (what probes use)
        assert model(x)["embedding"].shape == (4, 8)  # through the projection head (what the loss uses)


def test_group_norm_option_replaces_every_batch_norm():
    model = build(base_width=16, layers=[1, 1, 1, 1], norm="group")
    kinds = {type(m).__name__ for m in model.modules()}
    assert "GroupNorm" in kinds and "BatchNorm1d" not in kinds


def test_paper_encoder_is_smaller_than_its_width_suggests_but_not_trivial():
    small = sum(p.numel() for p in build(base_width=16, layers=[1, 1, 1, 1]).parameters())
    paper = sum(p.numel() for p in build().parameters())
    assert paper > 20 * small
