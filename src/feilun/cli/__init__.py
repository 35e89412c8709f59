"""The `feilun` command tree: parse, call one function, print."""
