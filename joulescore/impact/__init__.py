"""Carbon, water, cost, fleet scale and the physical floor."""
