"""Pipeline engines, registered under `feilun.engines` by file stem: `local`, `ray`."""
