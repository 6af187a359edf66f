"""The recursive engine: the root-model loop, sub-calls, budgets, usage and cost."""
