"""Data-set loaders (checksummed downloads, clear offline errors). Data knows nothing of models."""
