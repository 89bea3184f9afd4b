"""Where the kernel runs: partitions of a log, executors (local processes, Dask), saved state.

The kernel itself (:mod:`detector.features.kernel`) is a pure function of one
partition; this package only plans partitions, reads them and decides where
they run (the scikit-learn/joblib manner: one estimator, pluggable backends).
"""
