"""Strategies that are models of their own: LSTM momentum, transformer pairs, RL and genetic search, and the seed books built from them."""
