"""Recovery pipelines: streaming repair, fills from copies, the checksummed route, the block map."""
