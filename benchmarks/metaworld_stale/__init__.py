"""The Meta-World stale-data sweep on the TorchRL recipe (`sweep`, `aggregate`) and its RLlib APPO row."""
