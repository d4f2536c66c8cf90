"""The ecmem storage node: fragments in RAM, served over TCP."""
