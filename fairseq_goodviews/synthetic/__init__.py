"""Synthetic 12-lead ECG data: one dipole model (:mod:`.ecg`) written in the real file layouts.

* :mod:`fairseq_goodviews.synthetic.ecg`: the model's records and its overview; its parts are
  :mod:`.distributions` (the calibration to the real Chapman ``Diagnostics.xlsx``),
  :mod:`.targets` (rhythms, conditions, demographics), :mod:`.dipole`, :mod:`.patient`,
  :mod:`.fiducials` (the true fiducials) and :mod:`.rhythm`;
* :mod:`fairseq_goodviews.synthetic.chapman`: the Chapman/Shaoxing release layout
  (``Diagnostics.xlsx`` + ``ECGDataDenoised/*.csv``) and its command line;
* :mod:`fairseq_goodviews.synthetic.wfdb_layouts`: PhysioNet 2021 (``.mat`` + ``.hea``), PTB-XL and
  generic WFDB folders.
"""
