"""What every task of the project shares: ECG signals have no token dictionaries or length limits."""

from fairseq.tasks import FairseqTask


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
