"""What every task of the project shares: ECG signals have no token dictionaries or length limits."""

from pathlib import Path

from fairseq import checkpoint_utils
from fairseq.tasks import FairseqTask
from omegaconf import OmegaConf, open_dict


def record_pretrained_encoder(cfg) -> None:
    """Write the model config of ``cfg.model_path``'s checkpoint into ``cfg.encoder`` (when set).

    ``cfg`` is a downstream run's model config, saved in every checkpoint: with the pretrained
    encoder's own config in it, the checkpoint rebuilds without the pretraining checkpoint, whatever
    that encoder's architecture (not only the preset's encoder).
    """
    if not cfg.get("model_path"):
        return
    if not Path(cfg.model_path).is_file():
        raise FileNotFoundError(f"{cfg.model_path}: pretraining checkpoint not found (model.model_path)")
    state = checkpoint_utils.load_checkpoint_to_cpu(cfg.model_path)
    if state.get("cfg") is None or state["cfg"].get("model") is None:
        raise ValueError(f"{cfg.model_path}: not a fairseq checkpoint with a model config")
    with open_dict(cfg):
        cfg.encoder = OmegaConf.to_container(state["cfg"]["model"], resolve=True)


class EcgTask(FairseqTask):
    """A fairseq task over ECG records: no source or target dictionary, no maximum length."""

    @property
    def source_dictionary(self):
        return None

    @property
    def target_dictionary(self):
        return None

    def max_positions(self):
        return None
