"""The contract every backend shares: candidates and results (`types`), the `Reranker` base class
(`base`), strict configs (`config`), errors, calibration, the backend registry, the spec loader and
the paths models, caches and data resolve from. Imports nothing else of rankbridge."""
