"""goodviews-prepare-mimic-iv-ecg: prepare MIMIC-IV-ECG with patient-wise splits and the cart's measurements."""

import dataclasses
import sys
from collections.abc import Sequence

from fairseq_goodviews.cli.prepare_options import run_wfdb_preparer, wfdb_preparer_parser
from fairseq_goodviews.preprocessing.mimic_iv_ecg import MimicConverter, prepare_mimic_iv_ecg


def main(argv: Sequence[str] | None = None) -> int:
    parser = wfdb_preparer_parser(
        "goodviews-prepare-mimic-iv-ecg",
        "Prepare MIMIC-IV-ECG (record_list.csv, machine_measurements.csv, waveform_note_links.csv and "
        "files/): one .mat per study at --target-rate, subject_id as the patient, patient-wise splits, "
        "the cart's measurements as wave attributes (29999 = not measured; our delineation where the cart "
        "gives none), the machine report as text, fairseq manifests, skip report.",
        "MIMIC-IV-ECG folder (with record_list.csv and files/)",
    )
    return run_wfdb_preparer(
        parser,
        argv,
        lambda args, converter, options: prepare_mimic_iv_ecg(
            args.src_dir, args.out_dir, converter=MimicConverter(**dataclasses.asdict(converter)), options=options
        ),
    )


if __name__ == "__main__":
    sys.exit(main())
