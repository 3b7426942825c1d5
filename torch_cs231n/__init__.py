"""Tools built on the manual operators: models, initialisation, update rules, data, benchmarks."""
