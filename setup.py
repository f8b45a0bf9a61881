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
        "pandas>=2.0,<3",
        "openpyxl>=3.1",
        "soundfile",
        "wfdb>=4.1,<5",
        "tqdm",
        "matplotlib>=3.7",
        "neurokit2>=0.2.13,<0.3",
    ],
    extras_require={"test": ["pytest>=7.4"], "dev": ["pytest>=7.4", "ruff", "pre-commit"]},
    entry_points={
        "console_scripts": [
            "goodviews-evaluate=fairseq_goodviews.evaluation.evaluate:main",
            "goodviews-benchmark=fairseq_goodviews.cli.benchmark:main",
            "goodviews-lead-subsets=fairseq_goodviews.evaluation.lead_subsets:main",
            "goodviews-identify=fairseq_goodviews.evaluation.identification:main",
            "goodviews-embed=fairseq_goodviews.evaluation.embed:main",
            "goodviews-import-fairseq-signals-checkpoint=fairseq_goodviews.evaluation.import_fairseq_signals:main",
            "goodviews-validate-attributes=fairseq_goodviews.preprocessing.validate_attributes:main",
            "goodviews-prepare-chapman=fairseq_goodviews.preprocessing.chapman:main",
            "goodviews-prepare-physionet2021=fairseq_goodviews.preprocessing.physionet2021:main",
            "goodviews-prepare-ptbxl=fairseq_goodviews.preprocessing.ptbxl:main",
            "goodviews-prepare-wfdb-dir=fairseq_goodviews.preprocessing.wfdb_dir:main",
            "goodviews-import-fairseq-signals=fairseq_goodviews.preprocessing.fairseq_signals:main",
            "goodviews-pack=fairseq_goodviews.io.packed:main",
            "goodviews-synthetic-chapman=fairseq_goodviews.synthetic.chapman:main",
            "goodviews-synthetic-ptbxl=fairseq_goodviews.synthetic.ptbxl:main",
        ]
    },
)
