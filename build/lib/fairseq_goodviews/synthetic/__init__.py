"""Synthetic 12-lead ECG data: one dipole model (:mod:`.ecg`) written in the real file layouts.

* :mod:`fairseq_goodviews.synthetic.ecg`: the model (rhythms, conditions, patients) and its true
  fiducials, calibrated to the real Chapman ``Diagnostics.xlsx``;
* :mod:`fairseq_goodviews.synthetic.chapman`: the Chapman/Shaoxing release layout
  (``Diagnostics.xlsx`` + ``ECGDataDenoised/*.csv``) and its command line;
* :mod:`fairseq_goodviews.synthetic.wfdb_layouts`: PhysioNet 2021 (``.mat`` + ``.hea``), PTB-XL and
  generic WFDB folders.
"""
