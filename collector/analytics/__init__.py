"""Analytics over committed rows: pure functions, no database driver, so benches and tests reuse them."""
