"""One decision per module (image checks, opt-out, dedup, text): each holds the pure rule and the Beam
transform that applies it."""
