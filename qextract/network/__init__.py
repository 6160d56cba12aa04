"""The whole network in integers: simulation, golden vectors and accumulator widths."""
