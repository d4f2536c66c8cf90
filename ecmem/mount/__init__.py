"""The FUSE mount: regions as files (ecmem mount)."""
