"""``model.compile_encoder``: the compiled encoders compute what the eager ones do, keep their
parameter names, and a machine without a compiler is told so in one line."""

import pytest
import torch
from fairseq.dataclass.utils import merge_with_parent
from omegaconf import OmegaConf

from conftest import W2V_TINY
from fairseq_goodviews.models.compile import CompileUnavailableError, missing_compiler
from fairseq_goodviews.models.resnet1d import Resnet1dConfig, Resnet1dModel
from fairseq_goodviews.models.wav2vec2_ecg import Wav2Vec2EcgConfig, Wav2Vec2EcgModel

RESNET_TINY = {"base_width": 8, "layers": [1, 1, 1, 1], "embedding_dim": 16}
NO_COMPILER = missing_compiler(cuda=False)
needs_compiler = pytest.mark.skipif(NO_COMPILER is not None, reason=str(NO_COMPILER))


def resnet(compile_encoder: bool) -> Resnet1dModel:
    torch.manual_seed(0)
    cfg = OmegaConf.create({**RESNET_TINY, "compile_encoder": compile_encoder})
    return Resnet1dModel.build_model(merge_with_parent(Resnet1dConfig(), cfg))


def w2v(compile_encoder: bool) -> Wav2Vec2EcgModel:
    torch.manual_seed(0)
    cfg = OmegaConf.create({**W2V_TINY, "compile_encoder": compile_encoder})
    return Wav2Vec2EcgModel.build_model(merge_with_parent(Wav2Vec2EcgConfig(), cfg))


@pytest.mark.slow
@needs_compiler
def test_compiled_resnet_trains_as_the_eager_one(one_thread):
    eager, compiled = resnet(False), resnet(True)
    assert list(compiled.state_dict()) == list(eager.state_dict())  # checkpoints stay interchangeable
    x = torch.randn(4, 12, 400)
    outputs, grads = [], []
    for model in (eager, compiled):
        model.train()
        out = model(x)["embedding"]
        out.square().sum().backward()
        outputs.append(out.detach())
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters()]))
    torch.testing.assert_close(outputs[1], outputs[0], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(grads[1], grads[0], rtol=1e-3, atol=1e-4)
    assert not torch.equal(grads[0], torch.zeros_like(grads[0]))


@pytest.mark.slow
@needs_compiler
def test_compiled_wav2vec2_encodes_as_the_eager_one(one_thread):
    eager, compiled = w2v(False).eval(), w2v(True).eval()
    assert compiled.feature_extractor._compiled_call_impl is not None
    assert all(layer._compiled_call_impl is not None for layer in compiled.encoder.layers)
    x = torch.randn(3, 12, 640)
    with torch.no_grad():
        torch.testing.assert_close(compiled.encode(x), eager.encode(x), rtol=1e-4, atol=1e-5)


def test_no_compiler_is_a_one_line_error_before_anything_runs(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty folder: no compiler anywhere
    monkeypatch.delenv("CXX", raising=False)
    monkeypatch.delenv("CC", raising=False)
    assert "C++ compiler" in missing_compiler(cuda=False) and "C compiler" in missing_compiler(cuda=True)
    with pytest.raises(CompileUnavailableError, match=r"model.compile_encoder=true: .*set it to false") as error:
        resnet(True)
    assert "\n" not in str(error.value)
    resnet(False)  # off (the default): no compiler needed


def test_compile_is_off_by_default():
    assert not Resnet1dConfig().compile_encoder and not Wav2Vec2EcgConfig().compile_encoder
    assert resnet(False).encoder._compiled_call_impl is None
