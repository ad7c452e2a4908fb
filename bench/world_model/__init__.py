"""Action-conditioned world models that plan in embedding space (V-JEPA 2-AC style)."""
