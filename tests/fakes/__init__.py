"""Local servers that speak each email service's documented API, for tests and benchmarks."""
