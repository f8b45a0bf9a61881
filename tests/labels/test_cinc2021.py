"""The CinC 2021 class table: equivalent SNOMED CT codes share a class, unscored codes have none."""

import numpy as np

from fairseq_goodviews.labels.cinc2021 import CINC2021_CLASS_NAMES, cinc2021_multi_hot


def test_equivalent_codes_share_a_class_and_unscored_codes_are_ignored():
    lbbb = cinc2021_multi_hot(["164909002"])
    assert np.array_equal(lbbb, cinc2021_multi_hot(["733534002"]))
    assert np.array_equal(cinc2021_multi_hot(["59118001"]), cinc2021_multi_hot(["713427006"]))
    assert np.array_equal(cinc2021_multi_hot(["284470004"]), cinc2021_multi_hot(["63593006"]))
    assert np.array_equal(cinc2021_multi_hot(["427172004"]), cinc2021_multi_hot(["17338001"]))
    assert cinc2021_multi_hot(["428750005", "55827005"]).sum() == 0
    assert CINC2021_CLASS_NAMES[int(lbbb.argmax())] == "CLBBB|LBBB"
