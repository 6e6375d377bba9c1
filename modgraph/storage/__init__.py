"""The registry on disk: safetensors records, atomic writes, guards, archives, the card, training histories."""
