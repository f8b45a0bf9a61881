"""int16 steps with a per-lead gain: exact where the record's values are whole ADC steps, None where not."""

import numpy as np
import pytest

from fairseq_goodviews.io.int16_codec import decode, encode_int16, shared_gain


def _adc(seed: int, spread: float = 400.0, n: int = 5000) -> np.ndarray:
    return np.round(np.random.default_rng(seed).normal(0, spread, (12, n)))


@pytest.mark.parametrize("gain", [1000.0, 200.0, 2000.0, 32.5, 204.8])
def test_whole_steps_of_any_gain_come_back_as_the_adc_values(gain):
    adc = _adc(int(gain))
    feats = (adc / gain).astype(np.float32)  # what the WFDB reader writes
    encoded = encode_int16(feats)
    assert encoded is not None and encoded.steps.dtype == np.int16
    np.testing.assert_array_equal(encoded.steps, adc)
    np.testing.assert_array_equal(encoded.gain, np.float32(gain))
    assert not encoded.baseline.any()
    np.testing.assert_array_equal(decode(encoded.steps, encoded.gain, None), feats)


def test_a_gain_of_the_previous_record_that_is_a_multiple_is_reduced():
    adc = _adc(1)
    encoded = encode_int16((adc / 200.0).astype(np.float32), previous_gain=np.full(12, 1000.0, np.float32))
    np.testing.assert_array_equal(encoded.gain, np.float32(200.0))  # not 1000 with five times the steps
    np.testing.assert_array_equal(encoded.steps, adc)


def test_each_lead_has_its_own_gain_and_a_zero_filled_lead_takes_the_records():
    adc = _adc(2)
    gains = np.array([1000.0] * 6 + [200.0] * 5 + [1.0])
    adc[11] = 0
    feats = (adc / gains[:, None]).astype(np.float32)
    encoded = encode_int16(feats)
    np.testing.assert_array_equal(encoded.gain, np.array([1000.0] * 6 + [200.0] * 5 + [1000.0], np.float32))
    np.testing.assert_array_equal(encoded.steps, adc)


def test_steps_beyond_int16_are_shifted_by_a_baseline():
    adc = _adc(3, spread=50.0) + 40_000.0  # a 16-bit span away from zero
    feats = (adc / 1000.0).astype(np.float32)
    encoded = encode_int16(feats)
    assert encoded.baseline.any()
    np.testing.assert_array_equal(encoded.steps.astype(np.float64) - encoded.baseline[:, None], adc)
    np.testing.assert_array_equal(decode(encoded.steps, encoded.gain, encoded.baseline), feats)


@pytest.mark.parametrize(
    "feats",
    [
        np.random.default_rng(4).normal(0, 0.5, (12, 2000)),  # float values: resampled, filtered
        _adc(5, spread=30_000.0) / 1000.0,  # more than 16 bits of steps
        np.round(np.random.default_rng(6).normal(0, 300_000, (12, 2000))) / 1e6,  # Chapman's 3-decimal microvolts
    ],
    ids=["float", "24-bit", "decimal-microvolts"],
)
def test_records_that_are_not_whole_16_bit_steps_are_refused(feats):
    assert encode_int16(feats.astype(np.float32)) is None


def test_a_column_major_record_is_encoded_as_its_values():
    adc = _adc(7)
    feats = np.asfortranarray((adc / 1000.0).astype(np.float32))  # as read_record returns it
    np.testing.assert_array_equal(encode_int16(feats).steps, adc)


@pytest.mark.parametrize("gain", [1000.0, 200.0, 32.5, 204.8])
def test_a_gain_shared_by_every_lead_decodes_as_a_scalar_to_the_same_bits(gain):
    adc = _adc(8)
    adc[:, :2] = [[0, -1]] * 12  # a zero step and a negative one in every lead
    feats = (adc / gain).astype(np.float32)
    encoded = encode_int16(feats)
    divisor = shared_gain(encoded.gain)
    assert divisor.ndim == 0 and divisor == np.float32(gain)
    for baseline in (None, encoded.baseline):
        by_lead = decode(encoded.steps[:, 100:900], encoded.gain, baseline)
        by_scalar = decode(encoded.steps[:, 100:900], divisor, baseline)
        assert by_scalar.flags.c_contiguous and by_scalar.dtype == np.float32
        np.testing.assert_array_equal(by_scalar.view(np.uint32), by_lead.view(np.uint32))
    np.testing.assert_array_equal(decode(encoded.steps, divisor, None), feats)


def test_leads_with_different_gains_keep_their_own():
    gain = np.array([1000.0] * 11 + [200.0], np.float32)
    assert shared_gain(gain) is gain
