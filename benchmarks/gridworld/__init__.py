"""The exact GridWorld bias–variance study, sampling-free (`exact`) and its report (`study`)."""
