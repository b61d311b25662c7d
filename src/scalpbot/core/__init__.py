"""Pure core: arrays and frames in, values out. No network, no files, no clock reads."""
