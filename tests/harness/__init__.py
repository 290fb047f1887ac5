"""Test harness shared by the tests and the benchmarks (servers, fakes, throwaway databases)."""
