// Single-core tests: see below.
