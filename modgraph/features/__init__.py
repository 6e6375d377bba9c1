"""The feature cache: a modality's features computed once, stored as safetensors shards."""
