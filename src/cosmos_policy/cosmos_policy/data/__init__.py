"""Data: episode files, statistics, value targets, augmentation, text embeddings, datasets."""
