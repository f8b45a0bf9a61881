"""Scores of predictions and embeddings: classification metrics, the CinC 2021 challenge score,
patient retrieval. Plain numpy/torch below the fairseq plugins, which import it (never the reverse)."""
