"""The two bridges to fairseq-signals: its data folders (both ways) and its checkpoints (import)."""
