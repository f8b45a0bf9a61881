"""What training reads from an int16 sharded pack: the float32 millivolts of the .mat files exactly,
as from a float32 pack, on real PhysioNet 2021 records and through data-loader worker processes."""

import numpy as np
import torch

from conftest import shared_data
from fairseq_goodviews.data.ecg_dataset import EcgRecordSource
from fairseq_goodviews.io.packed import ShardedPack, write_pack
from fairseq_goodviews.preprocessing.items import PrepareOptions
from fairseq_goodviews.preprocessing.physionet2021 import prepare_physionet2021
from fairseq_goodviews.preprocessing.wfdb_dir import WfdbConverter


def test_int16_and_float32_packs_give_the_crops_of_the_mat_files_exactly(tmp_path):
    out = tmp_path / "out"
    prepare_physionet2021(
        shared_data() / "real" / "physionet2021",
        out,
        converter=WfdbConverter(attributes=False),
        options=PrepareOptions(progress=False),
    )
    manifest = out / "train.tsv"
    plain = EcgRecordSource(manifest, 500.0, use_pack=False)
    crops = {}
    for encoding in ("int16", "float32"):
        summary = write_pack(manifest, encoding=encoding, shard_records=3)
        assert summary["int16_records"] == (summary["records"] if encoding == "int16" else 0)
        source = EcgRecordSource(manifest, 500.0)
        assert isinstance(source.pack, ShardedPack) and source.pack.shards.max() > 0
        crops[encoding] = []
        for i in range(len(plain)):
            for seed in (0, 1):
                got, mask = source.load(i, 2500, np.random.default_rng(seed))
                expected, expected_mask = plain.load(i, 2500, np.random.default_rng(seed))
                assert got.dtype == np.float32 and got.flags.c_contiguous
                np.testing.assert_array_equal(got, expected)
                np.testing.assert_array_equal(mask, expected_mask)
                crops[encoding].append(got)
    assert all(np.array_equal(a, b) for a, b in zip(crops["int16"], crops["float32"], strict=True))


class _Crops(torch.utils.data.Dataset):
    def __init__(self, source: EcgRecordSource):
        self.source = source

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, index: int) -> torch.Tensor:
        return torch.from_numpy(self.source.load(index, 5000, None)[0])


def test_worker_processes_map_the_shards_themselves(tmp_path):
    out = tmp_path / "out"
    prepare_physionet2021(
        shared_data() / "real" / "physionet2021",
        out,
        converter=WfdbConverter(attributes=False),
        options=PrepareOptions(progress=False),
    )
    manifest = out / "train.tsv"
    write_pack(manifest, shard_records=2)
    source = EcgRecordSource(manifest, 500.0)
    loader = torch.utils.data.DataLoader(_Crops(source), batch_size=None, num_workers=2)
    got = list(loader)
    assert all(m is None for m in source.pack._maps)  # the parent process mapped no shard
    plain = EcgRecordSource(manifest, 500.0, use_pack=False)
    for i, crop in enumerate(got):
        np.testing.assert_array_equal(crop.numpy(), plain.load(i, 5000, None)[0])
