"""fairseq's trainer, with the plugin registered, ties only parameters that are really shared."""

import torch
from fairseq import trainer

from fairseq_goodviews import catalog_present_shared_params, register_plugins
from fairseq_goodviews.models.resnet1d import BasicBlock1d


class TiedHead(torch.nn.Module):
    """Bias-free convolutions (absent biases) and one weight really shared between two layers."""

    def __init__(self):
        super().__init__()
        self.block = BasicBlock1d(4, 8, 3, 2, "batch")
        self.a = torch.nn.Linear(8, 8)
        self.b = torch.nn.Linear(8, 8)
        self.b.weight = self.a.weight


def test_absent_biases_are_not_shared_parameters_and_real_ones_are():
    register_plugins()
    model = TiedHead()
    assert model.block.conv1.bias is None and model.block.conv2.bias is None
    assert trainer._catalog_shared_params(model) == [["a.weight", "b.weight"]]


def test_fairseqs_own_catalogue_takes_the_absent_biases_for_one_shared_parameter():
    register_plugins()
    register_plugins()  # idempotent: fairseq's catalogue is wrapped once
    groups = catalog_present_shared_params.fairseq_catalog(TiedHead())
    assert ["a.weight", "b.weight"] in groups
    # the false "detected shared parameter" lines: every absent bias of the block, the shortcut's included
    assert ["block.conv1.bias", "block.conv2.bias", "block.shortcut.0.bias"] in groups
