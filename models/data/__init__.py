"""Market data before features: corporate actions, panel reshaping, text sentiment and the investable universe."""
