"""torch-cs231n tools built on the manual operators: models, initialisation, update rules, data, benchmarks."""
