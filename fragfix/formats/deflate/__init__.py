"""The deflate search: a damaged stream traced symbol by symbol, candidate edits, their checks."""
