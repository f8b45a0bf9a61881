"""fairseq_goodviews: contrastive ECG pretraining plugin for fairseq (see README.md)."""
from setuptools import find_namespace_packages, find_packages, setup

setup(
    name="fairseq_goodviews",
    version="0.1.0",
    description="Which view makes a good positive pair: contrastive ECG pretraining as a fairseq plugin",
    python_requires=">=3.11,<3.12",
    packages=find_packages(include=["fairseq_goodviews", "fairseq_goodviews.*"])
    + find_namespace_packages(include=["hydra_plugins.*"]),
    # The hydra configs travel with the package.
    package_data={"fairseq_goodviews.config": ["*/*.yaml", "*/*/*.yaml"]},
    # fairseq-fixed is installed separately with --no-deps (see Makefile and README).
    install_requires=[
        "torch==2.13.0",
        "hydra-core==1.3.2",
        "omegaconf==2.3.0",
        "numpy>=1.26",
        "scipy>=1.11",
        "scikit-learn>=1.3",
        "pandas>=2.0",
        "openpyxl>=3.1",
        "soundfile",
        "wfdb>=4.1",
        "tqdm",
        "matplotlib>=3.7",
        "neurokit2==0.2.13",
    ],
    entry_points={
        "console_scripts": [
            "goodviews-evaluate=fairseq_goodviews.evaluation.evaluate:main",
            "goodviews-benchmark=fairseq_goodviews.table1.cli:main",
            "goodviews-lead-subsets=fairseq_goodviews.evaluation.lead_subsets:main",
            "goodviews-identify=fairseq_goodviews.evaluation.identification:main",
        ]
    },
)
