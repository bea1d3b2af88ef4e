"""Files in and out: atomic batches, which files a run reads and writes, mapfiles, unknown bytes, reports."""
