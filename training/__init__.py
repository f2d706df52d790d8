"""Stage 2, training: config checks, the run's lifecycle (tokenize once, train, merge), preflight,
estimates, and the GPU kit (torch build, wheelhouse, gpu-check, tiny models)."""
