"""Bridges to other libraries, each behind an optional extra (``landform.integrations.deepinv``: DeepInverse).

Nothing is imported here, so ``import landform`` never needs an extra installed.
"""
