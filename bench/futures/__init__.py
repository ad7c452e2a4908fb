"""futures-v1: the blurry-prediction experiment (pixel MSE vs embedding prediction on ambiguous futures)."""
