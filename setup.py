"""fairseq_goodviews: contrastive ECG pretraining plugin for fairseq (see README.md)."""

from setuptools import find_namespace_packages, find_packages, setup

setup(
    name="fairseq_goodviews",
    version="0.1.0",
    description="Which view makes a good positive pair: contrastive ECG pretraining as a fairseq plugin",
    python_requires=">=3.11,<3.14",
    packages=find_packages(include=["fairseq_goodviews", "fairseq_goodviews.*"])
    + find_namespace_packages(include=["hydra_plugins.*"]),
    # The hydra configs and the synthetic model's calibration tables travel with the package.
    package_data={
        "fairseq_goodviews.config": ["*/*.yaml", "*/*/*.yaml"],
        "fairseq_goodviews.synthetic": ["data/*.json"],
    },
    # Ranges, so the package installs beside a cluster's own torch; the exact CPU versions of the
    # reproducible environment are pinned in the Makefile and requirements.txt. fairseq-fixed is
    # installed separately with --no-deps (README "Dependencies").
    install_requires=[
        "torch>=2.1",
        "hydra-core>=1.3.2,<1.4",
        "omegaconf>=2.3,<2.4",
        "numpy>=1.26",
        "scipy>=1.11",
        "scikit-learn>=1.3",
        "threadpoolctl>=3.1",
        "pandas>=2.0",
        "openpyxl>=3.1",
        "soundfile",
        "wfdb>=4.2,<5",  # 4.2: XQRS without scipy.signal.ricker (gone in scipy 1.15)
        "tqdm",
        "matplotlib>=3.7",
        "submitit>=1.5,<2",
    ],
    # neurokit2 (which requires pandas<3 and setuptools<82) is the optional R-peak detector and
    # delineation of the wave attributes; wfdb's XQRS is their default.
    extras_require={
        "neurokit2": ["neurokit2>=0.2.13,<0.3"],
        "test": ["pytest>=7.4"],
        "dev": ["pytest>=7.4", "ruff", "pre-commit"],
    },
    entry_points={
        "console_scripts": [
            "goodviews-train=fairseq_goodviews.cli.train:main",
            "goodviews-evaluate=fairseq_goodviews.cli.evaluate:main",
            "goodviews-benchmark=fairseq_goodviews.cli.benchmark:main",
            "goodviews-perf=fairseq_goodviews.cli.perf:main",
            "goodviews-lead-subsets=fairseq_goodviews.cli.lead_subsets:main",
            "goodviews-identify=fairseq_goodviews.cli.identify:main",
            "goodviews-embed=fairseq_goodviews.cli.embed:main",
            "goodviews-import-fairseq-signals-checkpoint=fairseq_goodviews.cli.import_fairseq_signals_checkpoint:main",
            "goodviews-validate-attributes=fairseq_goodviews.cli.validate_attributes:main",
            "goodviews-prepare-chapman=fairseq_goodviews.cli.prepare_chapman:main",
            "goodviews-prepare-physionet2021=fairseq_goodviews.cli.prepare_physionet2021:main",
            "goodviews-prepare-ptbxl=fairseq_goodviews.cli.prepare_ptbxl:main",
            "goodviews-prepare-wfdb-dir=fairseq_goodviews.cli.prepare_wfdb_dir:main",
            "goodviews-prepare-mimic-iv-ecg=fairseq_goodviews.cli.prepare_mimic_iv_ecg:main",
            "goodviews-import-fairseq-signals=fairseq_goodviews.cli.import_fairseq_signals:main",
            "goodviews-pack=fairseq_goodviews.cli.pack:main",
            "goodviews-merge-shards=fairseq_goodviews.cli.merge_shards:main",
            "goodviews-synthetic-chapman=fairseq_goodviews.cli.synthetic_chapman:main",
            "goodviews-synthetic-ptbxl=fairseq_goodviews.cli.synthetic_ptbxl:main",
            "goodviews-synthetic-mimic-iv-ecg=fairseq_goodviews.cli.synthetic_mimic_iv_ecg:main",
        ]
    },
)
