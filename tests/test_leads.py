"""Lead names parsed once into canonical slots, and the one keep-mask of a lead subset."""

import pytest

from fairseq_goodviews.leads import (
    LEAD_SETS,
    LIMB_LEADS,
    UnknownLeadError,
    lead_keep_mask,
    lead_names,
    lead_set_label,
    parse_lead_set,
    parse_leads,
)


def test_leads_parse_into_sorted_slots_and_back_into_names():
    assert parse_leads("V2, ii,I") == [0, 1, 7]
    assert lead_names(parse_leads(["aVF", "III"])) == ["III", "aVF"]
    with pytest.raises(UnknownLeadError, match="unknown lead name 'V7'"):
        parse_leads("I,V7")


def test_keep_mask_marks_the_kept_slots():
    assert lead_keep_mask([0, 1, 7]).tolist() == [i in (0, 1, 7) for i in range(12)]
    assert lead_keep_mask(None).all() and lead_keep_mask(None).shape == (12,)
    assert lead_keep_mask([1], n_leads=3).tolist() == [False, True, False]


def test_lead_sets_are_named_or_joined_with_plus_in_canonical_order():
    assert parse_lead_set("6") == LIMB_LEADS and parse_lead_set(" 1 ") == ("II",)
    assert parse_lead_set("v2+I+ii") == ("I", "II", "V2") == LEAD_SETS["3"]
    assert lead_set_label(parse_lead_set("12")) == "12 leads" and lead_set_label(LIMB_LEADS) == "6 limb leads"
    assert lead_set_label(parse_lead_set("II+I")) == "I+II"
    with pytest.raises(UnknownLeadError, match=r"^lead set '5': unknown lead name '5'.*named set: 12, 6, 4, 3, 2, 1"):
        parse_lead_set("5")
