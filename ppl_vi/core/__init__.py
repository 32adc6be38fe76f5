"""Backend-neutral mathematics (Array API): pure functions, no randomness.

Every function takes torch tensors or jax arrays and returns the same kind; the
namespace is found with :func:`ppl_vi.core._xp.namespace`.
"""
