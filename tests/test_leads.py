"""Lead names parsed once into canonical slots, and the one keep-mask of a lead subset."""

import pytest

from fairseq_goodviews.leads import UnknownLeadError, lead_keep_mask, lead_names, parse_leads


def test_leads_parse_into_sorted_slots_and_back_into_names():
    assert parse_leads("V2, ii,I") == [0, 1, 7]
    assert lead_names(parse_leads(["aVF", "III"])) == ["III", "aVF"]
    with pytest.raises(UnknownLeadError, match="unknown lead name 'V7'"):
        parse_leads("I,V7")


def test_keep_mask_marks_the_kept_slots():
    assert lead_keep_mask([0, 1, 7]).tolist() == [i in (0, 1, 7) for i in range(12)]
    assert lead_keep_mask(None).all() and lead_keep_mask(None).shape == (12,)
    assert lead_keep_mask([1], n_leads=3).tolist() == [False, True, False]
