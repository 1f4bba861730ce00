"""Building blocks the tests share, one module per subject; test modules import these, never one
another (fixtures are in the conftests)."""
