"""Foundations every stage uses: errors that name the file, atomic writes, progress bars, process
pools, reading files, the data-card registry (datasets/, reproductions/) and settings."""
